/* tests/core/test_nn.c — the rest of lib/core/nn.c on every kernel set: embeddings (naive,
 * 2 threads against 1, vocab-parallel slices), AdamW and the sum of squares against double
 * precision, and every nn.c call refused with a message on bad arguments. Attention and
 * cross-entropy have their own files; the kernels themselves test_kernels_nn.c. */
#include <check.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* ---- embeddings ------------------------------------------------------------------------------ */

START_TEST(embedding_vocab_parallel_equals_full_bitwise)
{
    /* one nonzero term per row, so the sum over slices is exact, and the position add is
     * the same float addition: bitwise equal to the full lookup; the backward adds the
     * same rows in the same order */
    const int B = 3, T = 7, C = 37, V = 21, Vp = 24;
    const int64_t N = (int64_t)B * T;
    float *wte = tu_alloc_nan(Vp * C), *wpe = tu_alloc_nan(T * C), *dout = tu_alloc_nan(N * C);
    float *ref = tu_alloc_nan(N * C), *sum = tu_alloc_nan(N * C), *o = tu_alloc_nan(N * C);
    float *dwte = tu_alloc_nan(Vp * C), *dwpe = tu_alloc_nan(T * C);
    int32_t tok[21];
    tu_fill(wte, Vp * C, 81), tu_fill(wpe, T * C, 82), tu_fill(dout, N * C, 83);
    for (int64_t r = 0; r < N; r++)
        tok[r] = (int32_t)((r * r * 5 + 3) % V) / (r % 3 ? 1 : 4); /* repeats */
    ck_assert_int_eq(parlm_embedding_forward(ref, tok, wte, wpe, B, T, C, V), PARLM_OK);
    tu_fill(dwte, Vp * C, 84), tu_fill(dwpe, T * C, 85); /* accumulate onto something */
    ck_assert_int_eq(parlm_embedding_backward(dwte, dwpe, dout, tok, B, T, C, V), PARLM_OK);
    for (int ns = 1; ns <= 4; ns++) {
        int Vs = Vp / ns;
        memset(sum, 0, (size_t)N * C * sizeof(float));
        for (int s = 0; s < ns; s++) {
            ck_assert_int_eq(parlm_embedding_vp_forward(o, tok, wte + (int64_t)s * Vs * C, N, C,
                                                        s * Vs, Vs, V),
                             PARLM_OK);
            for (int64_t i = 0; i < N * C; i++)
                sum[i] += o[i];
        }
        for (int b = 0; b < B; b++)
            ck_assert_int_eq(parlm_bias_forward(sum + (int64_t)b * T * C, wpe, 1, (int64_t)T * C),
                             PARLM_OK);
        ck_assert_msg(memcmp(sum, ref, (size_t)N * C * sizeof(float)) == 0,
                      "%d slices: lookup differs from the full one", ns);
        float *w = tu_alloc_nan(Vp * C), *p = tu_alloc_nan(T * C);
        tu_fill(w, Vp * C, 84), tu_fill(p, T * C, 85);
        for (int s = 0; s < ns; s++) /* wpe on one slice only, as one rank's */
            ck_assert_int_eq(parlm_embedding_vp_backward(w + (int64_t)s * Vs * C,
                                                         s == 0 ? p : NULL, dout, tok, B, T, C,
                                                         s * Vs, Vs, V),
                             PARLM_OK);
        ck_assert_msg(memcmp(w, dwte, (size_t)Vp * C * sizeof(float)) == 0,
                      "%d slices: dwte differs", ns);
        ck_assert_msg(memcmp(p, dwpe, (size_t)T * C * sizeof(float)) == 0,
                      "%d slices: dwpe differs", ns);
        parlm_free(w), parlm_free(p);
    }
    parlm_free(wte), parlm_free(wpe), parlm_free(dout), parlm_free(ref), parlm_free(sum);
    parlm_free(o), parlm_free(dwte), parlm_free(dwpe);
}
END_TEST

START_TEST(embedding_matches_naive_with_repeated_tokens)
{
    const int B = 3, T = 7, C = 45, V = 11, Tp = 9; /* wpe has more rows than T */
    int64_t rows = (int64_t)B * T;
    int32_t tok[21];
    for (int64_t r = 0; r < rows; r++)
        tok[r] = (int32_t)((r * r + 3) % 5); /* only 5 distinct tokens: many repeats */
    float *wte = tu_alloc_nan((int64_t)V * C), *wpe = tu_alloc_nan((int64_t)Tp * C);
    float *dout = tu_alloc_nan(rows * C), *out = tu_alloc_nan(rows * C);
    float *dwte = tu_alloc_nan((int64_t)V * C), *dwpe = tu_alloc_nan((int64_t)Tp * C);
    fill_range(wte, (int64_t)V * C, 41, -1, 1), fill_range(wpe, (int64_t)Tp * C, 42, -1, 1);
    fill_range(dout, rows * C, 43, -1, 1);
    float *dwte0 = tu_alloc_nan((int64_t)V * C), *dwpe0 = tu_alloc_nan((int64_t)Tp * C);
    fill_range(dwte0, (int64_t)V * C, 44, -1, 1), fill_range(dwpe0, (int64_t)Tp * C, 45, -1, 1);
    /* references: the forward is one float addition (exact in double, rounded once: equal);
     * the scatter-add of n rows onto a start value is within n u sum|terms| */
    size_t no = (size_t)(rows * C) * sizeof(double), nte = (size_t)V * C * sizeof(double);
    size_t npe = (size_t)Tp * C * sizeof(double);
    double *rout = xmalloc(no), *tout = xmalloc(no), *rte = xmalloc(nte), *tte = xmalloc(nte);
    double *rpe = xmalloc(npe), *tpe = xmalloc(npe);
    for (int64_t r = 0; r < rows; r++)
        for (int c = 0; c < C; c++) {
            rout[r * C + c] = (float)((double)wte[tok[r] * C + c] + wpe[(r % T) * C + c]);
            tout[r * C + c] = 0;
        }
    for (int64_t i = 0; i < (int64_t)V * C; i++)
        rte[i] = dwte0[i], tte[i] = fabs(dwte0[i]);
    for (int64_t i = 0; i < (int64_t)Tp * C; i++)
        rpe[i] = dwpe0[i], tpe[i] = fabs(dwpe0[i]);
    int cnt_te[11] = {0};
    for (int64_t r = 0; r < rows; r++) {
        cnt_te[tok[r]]++;
        for (int c = 0; c < C; c++) {
            rte[tok[r] * C + c] += dout[r * C + c], tte[tok[r] * C + c] += fabs(dout[r * C + c]);
            rpe[(r % T) * C + c] += dout[r * C + c], tpe[(r % T) * C + c] += fabs(dout[r * C + c]);
        }
    }
    for (int v = 0; v < V; v++)
        for (int c = 0; c < C; c++)
            tte[v * C + c] *= (cnt_te[v] + 1) * U_RND;
    for (int64_t i = 0; i < (int64_t)Tp * C; i++)
        tpe[i] *= (B + 1) * U_RND;
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    for (int ii = 0; ii < ni; ii++) {
        ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
        const char *nm = parlm_isa_name(isas[ii]);
        ck_assert_int_eq(parlm_embedding_forward(out, tok, wte, wpe, B, T, C, V), PARLM_OK);
        expect_close(nm, "embedding out", out, rout, tout, rows * C);
        memcpy(dwte, dwte0, (size_t)V * C * sizeof(float));
        memcpy(dwpe, dwpe0, (size_t)Tp * C * sizeof(float));
        ck_assert_int_eq(parlm_embedding_backward(dwte, dwpe, dout, tok, B, T, C, V), PARLM_OK);
        expect_close(nm, "dwte", dwte, rte, tte, (int64_t)V * C);
        expect_close(nm, "dwpe", dwpe, rpe, tpe, (int64_t)Tp * C); /* rows >= T untouched */
    }
    parlm_isa_select(saved);
    free(rout), free(tout), free(rte), free(tte), free(rpe), free(tpe);
    parlm_free(wte), parlm_free(wpe), parlm_free(dout), parlm_free(out), parlm_free(dwte);
    parlm_free(dwpe), parlm_free(dwte0), parlm_free(dwpe0);
}
END_TEST

START_TEST(embedding_threads_bitwise_repeatable)
{
    /* large enough for the wrappers to use both threads (rows * C >= 2 * 32768) */
    const int B = 4, T = 64, C = 768, V = 50;
    int64_t rows = (int64_t)B * T;
    int32_t *tok = xmalloc((size_t)rows * sizeof(int32_t));
    for (int64_t r = 0; r < rows; r++)
        tok[r] = (int32_t)((r * 31) % 7); /* 7 distinct tokens: heavy duplication */
    float *wte = tu_alloc_nan((int64_t)V * C), *wpe = tu_alloc_nan((int64_t)T * C);
    float *dout = tu_alloc_nan(rows * C);
    fill_range(wte, (int64_t)V * C, 51, -1, 1), fill_range(wpe, (int64_t)T * C, 52, -1, 1);
    fill_range(dout, rows * C, 53, -1, 1);
    float *o[3], *te[3], *pe[3];
    for (int t = 0; t < 3; t++) {
        o[t] = tu_alloc_nan(rows * C);
        te[t] = tu_alloc_nan((int64_t)V * C);
        pe[t] = tu_alloc_nan((int64_t)T * C);
    }
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    int saved_threads = omp_get_max_threads();
    for (int ii = 0; ii < ni; ii++) {
        ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
        const int threads[3] = {1, 2, 2};
        for (int t = 0; t < 3; t++) {
            omp_set_num_threads(threads[t]);
            memset(te[t], 0, (size_t)V * C * sizeof(float));
            memset(pe[t], 0, (size_t)T * C * sizeof(float));
            ck_assert_int_eq(parlm_embedding_forward(o[t], tok, wte, wpe, B, T, C, V), PARLM_OK);
            ck_assert_int_eq(parlm_embedding_backward(te[t], pe[t], dout, tok, B, T, C, V),
                             PARLM_OK);
        }
        /* every float is accumulated by one thread in row order: 1 and 2 threads agree */
        for (int t = 1; t < 3; t++) {
            ck_assert_msg(memcmp(o[0], o[t], (size_t)(rows * C) * 4) == 0, "%s: out differs",
                          parlm_isa_name(isas[ii]));
            ck_assert_msg(memcmp(te[0], te[t], (size_t)V * C * 4) == 0, "%s: dwte differs",
                          parlm_isa_name(isas[ii]));
            ck_assert_msg(memcmp(pe[0], pe[t], (size_t)T * C * 4) == 0, "%s: dwpe differs",
                          parlm_isa_name(isas[ii]));
        }
    }
    omp_set_num_threads(saved_threads);
    parlm_isa_select(saved);
    for (int t = 0; t < 3; t++)
        parlm_free(o[t]), parlm_free(te[t]), parlm_free(pe[t]);
    free(tok);
    parlm_free(wte), parlm_free(wpe), parlm_free(dout);
}
END_TEST

/* ---- optimizer and norm ---------------------------------------------------------------------- */

START_TEST(adamw_matches_naive_double)
{
    const int64_t n = 1000 + 37; /* several threads' slices and vector tails */
    const parlm_adamw_cfg cfg = {3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f};
    const int steps = 5;
    float *p = tu_alloc_nan(n), *m = tu_alloc_nan(n), *v = tu_alloc_nan(n), *g = tu_alloc_nan(n);
    double *rp = xmalloc((size_t)n * sizeof(double)), *rm = xmalloc((size_t)n * sizeof(double));
    double *rv = xmalloc((size_t)n * sizeof(double)), *tp = xmalloc((size_t)n * sizeof(double));
    double *tm = xmalloc((size_t)n * sizeof(double)), *tv = xmalloc((size_t)n * sizeof(double));
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    const double b1 = cfg.beta1, b2 = cfg.beta2; /* the float values, exactly */
    for (int ii = 0; ii < ni; ii++) {
        ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
        fill_range(p, n, 61, -1, 1);
        for (int64_t i = 0; i < n; i++) {
            m[i] = v[i] = 0.0f;
            rp[i] = p[i], rm[i] = rv[i] = 0, tp[i] = tm[i] = tv[i] = 0;
        }
        for (int t = 1; t <= steps; t++) {
            fill_range(g, n, 70 + t, -2, 2);
            if (t == 3)
                g[5] = 0.0f; /* a zero gradient: the update is decay plus momentum only */
            float gs = t == 2 ? 0.25f : 1.0f; /* a clipping step */
            ck_assert_int_eq(parlm_adamw_update(p, g, m, v, n, &cfg, t, gs), PARLM_OK);
            /* The library forms bc = 1 - powf(beta, t) in float: relative error
             * eb = 2 u beta^t / (1 - beta^t) + u. Each state update is a few roundings
             * (4 u relative, plus the error carried from the last step times beta); the
             * step is lr * (mh / (sqrt(vh) + eps) + wd p), relative error
             * em + ev / 2 + 2 eb + 8 u, plus u |p| for the subtraction. */
            double bc1 = 1 - pow(b1, t), bc2 = 1 - pow(b2, t);
            double eb1 = 2 * U_RND * pow(b1, t) / bc1 + U_RND;
            double eb2 = 2 * U_RND * pow(b2, t) / bc2 + U_RND;
            for (int64_t i = 0; i < n; i++) {
                double gi = (double)g[i] * gs;
                rm[i] = b1 * rm[i] + (1 - b1) * gi;
                rv[i] = b2 * rv[i] + (1 - b2) * gi * gi;
                tm[i] = b1 * tm[i] + 4 * U_RND * (b1 * fabs(rm[i]) + (1 - b1) * fabs(gi));
                tv[i] = b2 * tv[i] + 4 * U_RND * (b2 * fabs(rv[i]) + (1 - b2) * gi * gi);
                double mh = rm[i] / bc1, vh = rv[i] / bc2, den = sqrt(vh) + cfg.eps;
                double step = mh / den + cfg.weight_decay * rp[i];
                double em = (tm[i] / bc1 + fabs(mh) * eb1) / den;
                double dsq = (tv[i] / bc2 + vh * eb2) / (2 * sqrt(vh) + 1e-300); /* sqrt */
                double ev = dsq / den * fabs(mh / den);
                rp[i] -= cfg.lr * step;
                tp[i] += cfg.lr * (em + ev + 8 * U_RND * fabs(step) +
                                   cfg.weight_decay * tp[i]) + 2 * U_RND * fabs(rp[i]);
            }
        }
        const char *nm = parlm_isa_name(isas[ii]);
        double *tpp = xmalloc((size_t)n * sizeof(double));
        for (int64_t i = 0; i < n; i++)
            tpp[i] = tp[i] + 1e-12; /* zero-gradient coordinates can be exact */
        expect_close(nm, "adamw params", p, rp, tpp, n);
        for (int64_t i = 0; i < n; i++)
            tpp[i] = tm[i] + 1e-30;
        expect_close(nm, "adamw m", m, rm, tpp, n);
        for (int64_t i = 0; i < n; i++)
            tpp[i] = tv[i] + 1e-30;
        expect_close(nm, "adamw v", v, rv, tpp, n);
        free(tpp);
    }
    parlm_isa_select(saved);
    parlm_free(p), parlm_free(m), parlm_free(v), parlm_free(g);
    free(rp), free(rm), free(rv), free(tp), free(tm), free(tv);
}
END_TEST

START_TEST(sumsq_matches_double)
{
    static const int64_t Ns[] = {1, 5, 16, 33, 1000, 100003, 1 << 20};
    parlm_isa isas[PARLM_ISA_COUNT];
    int ni = supported_isas(isas);
    parlm_isa saved = parlm_isa_current();
    float *x = tu_alloc_nan(1 << 20);
    fill_range(x, 1 << 20, 81, -3, 3);
    x[7] = 1e20f, x[9] = 1e-20f; /* wide range: squares need double */
    for (int k = 0; k < 7; k++) {
        int64_t n = Ns[k];
        /* the squares are exact in double; Neumaier's compensated sum of them is within
         * 2 2^-53 of the exact sum (+ n 2^-106): a reference far tighter than the bound */
        double ref = 0, comp = 0;
        for (int64_t i = 0; i < n; i++) {
            double sq = (double)x[i] * x[i], t = ref + sq;
            comp += fabs(ref) >= fabs(sq) ? (ref - t) + sq : (sq - t) + ref;
            ref = t;
        }
        ref += comp;
        for (int ii = 0; ii < ni; ii++) {
            ck_assert_int_eq(parlm_isa_select(isas[ii]), PARLM_OK);
            double got;
            ck_assert_int_eq(parlm_sumsq(x, n, &got), PARLM_OK);
            /* double summation of n exact squares in any order: n 2^-53 relative */
            double tol = (double)(n + 8) * DBL_EPSILON / 2 * ref;
            ck_assert_msg(fabs(got - ref) <= tol, "%s n=%lld: %.17g vs %.17g",
                          parlm_isa_name(isas[ii]), (long long)n, got, ref);
        }
    }
    parlm_isa_select(saved);
    parlm_free(x);
}
END_TEST

/* ---- errors ---------------------------------------------------------------------------------- */

START_TEST(bad_input_is_an_error_with_message)
{
    enum { B = 1, T = 4, C = 8, NH = 2 };
    float qkv[B * T * 3 * C] = {0}, out[B * T * C], dout[B * T * C] = {0}, lse[B * NH * T];
    float dqkv[B * T * 3 * C] = {0};
    float big[3 * 514] = {0}; /* C = 514, NH = 2: hs = 257 > 256 */
    expect_einval(parlm_attention_forward(NULL, lse, qkv, B, T, C, NH), "fwd out NULL");
    expect_einval(parlm_attention_forward(out, NULL, qkv, B, T, C, NH), "fwd lse NULL");
    expect_einval(parlm_attention_forward(out, lse, NULL, B, T, C, NH), "fwd qkv NULL");
    expect_einval(parlm_attention_forward(out, lse, qkv, B, T, C, 3), "fwd C % NH");
    expect_einval(parlm_attention_forward(out, lse, qkv, 0, T, C, NH), "fwd B = 0");
    expect_einval(parlm_attention_forward(out, lse, qkv, B, 0, C, NH), "fwd T = 0");
    expect_einval(parlm_attention_forward(out, lse, qkv, B, T, C, 0), "fwd NH = 0");
    expect_einval(parlm_attention_forward(out, lse, big, 1, 1, 514, 2), "fwd hs 257");
    expect_einval(parlm_attention_backward(NULL, dout, qkv, out, lse, B, T, C, NH), "bwd NULL");
    expect_einval(parlm_attention_backward(dqkv, dout, qkv, out, NULL, B, T, C, NH), "bwd lse");
    expect_einval(parlm_attention_backward(dqkv, dout, qkv, out, lse, B, T, C, 3), "bwd C % NH");
    expect_einval(parlm_attention_backward(dqkv, dout, qkv, out, lse, B, -1, C, NH), "bwd T<0");
    expect_einval(parlm_attention_cached(out, qkv, C, qkv, qkv, 0, 0, C, NH), "cached tq = 0");
    expect_einval(parlm_attention_cached(out, qkv, C, qkv, qkv, -1, 1, C, NH), "cached t0 < 0");
    expect_einval(parlm_attention_cached(out, qkv, C - 1, qkv, qkv, 0, 1, C, NH), "cached ldq");
    expect_einval(parlm_attention_cached(out, qkv, C, NULL, qkv, 0, 1, C, NH), "cached NULL");
    expect_einval(parlm_attention_cached(out, qkv, C, qkv, qkv, 0, 1, C, 3), "cached C % NH");
    expect_einval(parlm_attention_cached(out, qkv, C, qkv, qkv, INT_MAX, 2, C, NH),
                  "cached t0 + tq overflows");

    float logits[2 * 8] = {0}, loss[2], ls[2], dl[2] = {1, 1};
    int32_t tg[2] = {1, 5}, bad[2] = {1, 7}, neg[2] = {-1, 0};
    expect_einval(parlm_crossentropy_forward(loss, ls, logits, bad, 2, 7, 8), "ce target = V");
    expect_einval(parlm_crossentropy_forward(loss, ls, logits, neg, 2, 7, 8), "ce target < 0");
    expect_einval(parlm_crossentropy_forward(NULL, ls, logits, tg, 2, 7, 8), "ce NULL");
    expect_einval(parlm_crossentropy_forward(loss, ls, logits, tg, 2, 9, 8), "ce Vp < V");
    expect_einval(parlm_crossentropy_forward(loss, ls, logits, tg, 0, 7, 8), "ce N = 0");
    expect_einval(parlm_crossentropy_backward(logits, logits, bad, ls, dl, 2, 7, 8), "ceb target");
    expect_einval(parlm_crossentropy_backward(logits, logits, tg, ls, NULL, 2, 7, 8), "ceb NULL");
    float part[4];
    expect_einval(parlm_crossentropy_vp_partial(part, logits, bad, 2, 0, 4, 7), "vp target = V");
    expect_einval(parlm_crossentropy_vp_partial(part, logits, tg, 2, -1, 4, 7), "vp v0 < 0");
    expect_einval(parlm_crossentropy_vp_partial(part, logits, tg, 2, 0, 0, 7), "vp Vs = 0");
    expect_einval(parlm_crossentropy_vp_combine(loss, ls, part, 2, 0), "vp tp = 0");
    expect_einval(parlm_crossentropy_vp_backward(logits, logits, tg, ls, NULL, 2, 0, 4, 7),
                  "vpb NULL");
    expect_einval(parlm_embedding_vp_forward(logits, neg, logits, 2, 1, 0, 4, 7), "vp token < 0");
    expect_einval(parlm_embedding_vp_backward(logits, NULL, logits, bad, 1, 2, 1, 0, 4, 7),
                  "vpb token = V");

    float wte[4 * 3] = {0}, wpe[2 * 3] = {0}, eo[2 * 3];
    int32_t tok[2] = {0, 4};
    expect_einval(parlm_embedding_forward(eo, tok, wte, wpe, 1, 2, 3, 4), "embed token = V");
    expect_einval(parlm_embedding_forward(eo, NULL, wte, wpe, 1, 2, 3, 4), "embed NULL");
    expect_einval(parlm_embedding_forward(eo, tg, wte, wpe, 0, 2, 3, 4), "embed B = 0");
    expect_einval(parlm_embedding_backward(wte, wpe, eo, tok, 1, 2, 3, 4), "embed bwd token");

    float p[4] = {0}, g[4] = {0}, m[4] = {0}, v[4] = {0};
    parlm_adamw_cfg cfg = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f};
    expect_einval(parlm_adamw_update(p, g, m, v, 4, NULL, 1, 1.0f), "adamw cfg NULL");
    expect_einval(parlm_adamw_update(p, g, m, v, 4, &cfg, 0, 1.0f), "adamw t = 0");
    cfg.beta1 = 1.0f;
    expect_einval(parlm_adamw_update(p, g, m, v, 4, &cfg, 1, 1.0f), "adamw beta1 = 1");
    double s;
    expect_einval(parlm_sumsq(NULL, 4, &s), "sumsq NULL");
    expect_einval(parlm_sumsq(p, 4, NULL), "sumsq out NULL");
}
END_TEST

static Suite *nn_suite(void)
{
    Suite *s = suite_create("nn");
    TCase *tc = tcase_create("embedding");
    tcase_add_test(tc, embedding_matches_naive_with_repeated_tokens);
    tcase_add_test(tc, embedding_threads_bitwise_repeatable);
    tcase_add_test(tc, embedding_vocab_parallel_equals_full_bitwise);
    suite_add_tcase(s, tc);
    tc = tcase_create("optimizer");
    tcase_add_test(tc, adamw_matches_naive_double);
    tcase_add_test(tc, sumsq_matches_double);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, bad_input_is_an_error_with_message);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return run_suite(nn_suite()); }
