/* tests/test_model.c — the GPT model end to end: finite-difference gradients of every
 * parameter on a tiny config, loss at init ~ ln(V), overfitting one batch, bitwise
 * determinism, KV-cache generation equal to the full forward, bf16 matmuls close to
 * f32, decode on quantized weights, and bad input. Runs on the best kernel set and on the scalar reference. */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parlm.h"
#include "../../lib/model/dp_hooks.h"
#include "../testutil.h"
#include "model_check.h"

static parlm_gpt *tiny(int L, int NH, int C, int maxT, int V, int Vp, uint64_t seed)
{
    parlm_gpt_config cfg = {.n_layer = L, .n_head = NH, .n_embd = C,
                            .max_seq = maxT, .vocab = V, .vocab_pad = Vp};
    parlm_gpt *m;
    ck_assert_msg(parlm_gpt_create(&m, &cfg, seed) == PARLM_OK, "%s", parlm_last_error());
    return m;
}

/* Central differences on every parameter. Weights are re-drawn with std 0.3 so that all
 * gradients are well above float rounding of the loss (~2.4 * 6e-8). With h = 1e-2 the
 * truncation error is O(h^2 |f'''|) ~ 1e-4 here and the rounding error ~ 1e-5; the check
 * is |fd - an| <= 2e-3 + 3e-2 |an| per parameter, and padded vocabulary rows get exactly 0. */
static void gradcheck(parlm_isa isa)
{
    ck_assert_int_eq(parlm_isa_select(isa), PARLM_OK);
    const int B = 2, T = 5, V = 11, Vp = 16;
    parlm_gpt *m = tiny(2, 2, 8, 6, V, Vp, 1);
    int64_t P = parlm_gpt_num_params(m);
    float *p = parlm_gpt_params(m);
    tu_fill(p, P, 99);
    for (int64_t i = 0; i < P; i++)
        p[i] *= 0.3f * 1.7320508f; /* uniform with std 0.3 */
    memset(p + (int64_t)V * 8, 0, (size_t)(Vp - V) * 8 * sizeof(float)); /* padded rows */
    int32_t in[10], tg[10];
    random_tokens(in, B * T, V, 1);
    random_tokens(tg, B * T, V, 2);
    ck_assert_int_eq(parlm_gpt_setup(m, B, T, 1), PARLM_OK);
    float *g = fd_check_model(m, in, tg, parlm_isa_name(isa));
    for (int64_t i = (int64_t)V * 8; i < (int64_t)Vp * 8; i++)
        ck_assert_msg(g[i] == 0.0f, "padded vocab gradient %lld = %g", (long long)i, g[i]);
    free(g);
    parlm_gpt_free(m);
}

START_TEST(gradients_match_finite_differences)
{
    parlm_isa best = parlm_isa_current();
    gradcheck(PARLM_ISA_SCALAR);
    gradcheck(best);
    parlm_isa_select(best);
}
END_TEST

/* With N(0, 0.02) weights a logit is a dot of a layernormed (unit-variance) row with a
 * wte row: std 0.02 sqrt(C) = 0.16 for C = 64. The expected loss is then ln V + 0.16^2/2
 * and the mean over 128 targets wanders by ~0.16/sqrt(128) = 0.014: 0.1 is 5 sigma. */
START_TEST(loss_at_init_is_ln_v)
{
    parlm_gpt *m = tiny(2, 4, 64, 32, 256, 0, 3);
    ck_assert_int_eq(parlm_gpt_get_config(m).vocab_pad, 256);
    int32_t in[4 * 32], tg[4 * 32];
    random_tokens(in, 128, 256, 3);
    random_tokens(tg, 128, 256, 4);
    ck_assert_int_eq(parlm_gpt_setup(m, 4, 32, 0), PARLM_OK);
    float loss;
    ck_assert_int_eq(parlm_gpt_forward(m, in, tg, &loss), PARLM_OK);
    ck_assert_msg(fabsf(loss - logf(256.0f)) < 0.1f, "loss %f, ln V %f", loss, logf(256.0f));
    parlm_gpt_free(m);
}
END_TEST

static float train(parlm_gpt *m, const int32_t *in, const int32_t *tg, int steps, float lr)
{
    parlm_adamw_cfg opt = {lr, 0.9f, 0.95f, 1e-8f, 0.0f};
    float loss = 0;
    for (int s = 0; s < steps; s++) {
        ck_assert_int_eq(parlm_gpt_forward(m, in, tg, &loss), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_zero_grad(m), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_backward(m, 1.0f), PARLM_OK);
        float norm;
        ck_assert_int_eq(parlm_gpt_grad_norm(m, &norm), PARLM_OK);
        ck_assert(isfinite(norm));
        ck_assert_int_eq(parlm_gpt_update(m, &opt, norm > 1.0f ? 1.0f / norm : 1.0f), PARLM_OK);
    }
    return loss;
}

/* A 100k-parameter model memorizes one batch of 64 random tokens: from ln(64) = 4.16
 * the loss must fall below 0.5 within 150 AdamW steps. */
START_TEST(overfits_one_batch)
{
    parlm_gpt *m = tiny(2, 4, 64, 16, 64, 0, 5);
    int32_t in[4 * 16], tg[4 * 16];
    random_tokens(in, 64, 64, 5);
    random_tokens(tg, 64, 64, 6);
    ck_assert_int_eq(parlm_gpt_setup(m, 4, 16, 1), PARLM_OK);
    float first;
    ck_assert_int_eq(parlm_gpt_forward(m, in, tg, &first), PARLM_OK);
    float last = train(m, in, tg, 150, 1e-2f);
    ck_assert_msg(last < 0.5f, "loss %f -> %f after 150 steps", first, last);
    ck_assert_int_eq(parlm_gpt_get_step(m), 150);
    parlm_gpt_free(m);
}
END_TEST

/* Same seed, inputs and thread count: bitwise the same parameters after training. */
START_TEST(training_is_deterministic)
{
    float *p[2];
    int64_t P = 0;
    for (int run = 0; run < 2; run++) {
        omp_set_num_threads(2);
        parlm_gpt *m = tiny(2, 2, 32, 16, 50, 0, 7);
        int32_t in[3 * 16], tg[3 * 16];
        random_tokens(in, 48, 50, 8);
        random_tokens(tg, 48, 50, 9);
        ck_assert_int_eq(parlm_gpt_setup(m, 3, 16, 1), PARLM_OK);
        train(m, in, tg, 5, 1e-3f);
        P = parlm_gpt_num_params(m);
        p[run] = malloc((size_t)P * sizeof(float));
        memcpy(p[run], parlm_gpt_params(m), (size_t)P * sizeof(float));
        parlm_gpt_free(m);
    }
    ck_assert(memcmp(p[0], p[1], (size_t)P * sizeof(float)) == 0);
    free(p[0]);
    free(p[1]);
}
END_TEST

/* Generation with the KV cache (a prefill of 5 tokens, then one token at a time) gives
 * the logits the full forward computes at the same positions. Both sum the same terms
 * in different blockings: 1e-4 absolute on logits of size ~1 is float noise. */
START_TEST(kv_cache_matches_forward)
{
    parlm_isa best = parlm_isa_current();
    for (int pass = 0; pass < 2; pass++) {
        parlm_isa_select(pass ? best : PARLM_ISA_SCALAR);
        parlm_gpt *m = tiny(2, 2, 32, 16, 40, 0, 11);
        kv_check_model(m, 12, parlm_isa_name(parlm_isa_current()));
        float *lg = malloc((size_t)parlm_gpt_get_config(m).vocab_pad * sizeof(float));
        int32_t in[5] = {1, 2, 3, 4, 5};
        ck_assert_int_eq(parlm_gpt_infer(m, in, 5, 12, lg), PARLM_EINVAL); /* past maxT */
        free(lg);
        parlm_gpt_free(m);
    }
    parlm_isa_select(best);
}
END_TEST

/* Decodes token in[t] at position t with the current thread count into lg: with 1
 * thread its logits become the reference row of t, with more they must equal it bitwise */
static void decode_vs_one_thread(parlm_gpt *m, const int32_t *in, int t, int nt, float *ref,
                                 float *lg, int V, int Vp, const char *what)
{
    ck_assert_int_eq(parlm_gpt_infer(m, in + t, 1, t, lg), PARLM_OK);
    if (nt == 1)
        memcpy(ref + (int64_t)t * Vp, lg, (size_t)Vp * sizeof(float));
    ck_assert_msg(!memcmp(lg, ref + (int64_t)t * Vp, (size_t)V * sizeof(float)),
                  "%s: %d threads differ at position %d", what, nt, t);
}

/* Decode runs one token in one parallel region (lib/model/decode.c), splitting heads over the
 * threads when they divide them and output rows otherwise: every thread count gives
 * bitwise the same logits (each output element is summed the same way), f32 and bf16,
 * on heads of 66 and 88 channels (slices that are no multiple of 16); f32 equals the
 * full forward, bf16 stays within 2% of the logits' range of it. C = 264 lets 4 threads
 * run (decode takes one per 16K weights of a C x C matrix). */
START_TEST(decode_is_independent_of_threads)
{
    int saved = omp_get_max_threads();
    const int T = 9, V = 50, C = 264;
    for (int NH = 3; NH <= 4; NH++) {
        parlm_gpt *m = tiny(2, NH, C, T, V, 0, 31);
        int Vp = parlm_gpt_get_config(m).vocab_pad;
        float *p = parlm_gpt_params(m);
        tu_fill(p, parlm_gpt_num_params(m), 33); /* biases and norms too, not just at init */
        for (int64_t i = 0; i < parlm_gpt_num_params(m); i++)
            p[i] *= 0.15f;
        int32_t in[9];
        random_tokens(in, T, V, 32);
        ck_assert_int_eq(parlm_gpt_setup(m, 1, T, 0), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_forward(m, in, NULL, NULL), PARLM_OK);
        float *full = malloc((size_t)T * Vp * sizeof(float));
        memcpy(full, parlm_gpt_logits(m), (size_t)T * Vp * sizeof(float));
        float range = 0.0f;
        for (int64_t i = 0; i < (int64_t)T * Vp; i++)
            range = fmaxf(range, fabsf(full[i]));
        float *ref = malloc((size_t)T * Vp * sizeof(float)), *lg = malloc((size_t)Vp * sizeof(float));
        for (int bf16 = 0; bf16 < 2; bf16++) {
            ck_assert_int_eq(parlm_gpt_set_bf16(m, bf16), PARLM_OK);
            for (int nt = 1; nt <= 4; nt++) {
                omp_set_num_threads(nt);
                char what[32];
                snprintf(what, sizeof what, "NH %d bf16 %d", NH, bf16);
                for (int t = 0; t < T; t++) {
                    decode_vs_one_thread(m, in, t, nt, ref, lg, V, Vp, what);
                    float d = tu_max_abs_diff(lg, full + (int64_t)t * Vp, V);
                    ck_assert_msg(d <= (bf16 ? 0.02f * range : 1e-4f), "NH %d bf16 %d "
                                  "position %d: %g from the forward (range %g)", NH, bf16, t,
                                  d, range);
                }
            }
        }
        free(ref);
        free(lg);
        free(full);
        parlm_gpt_free(m);
    }
    omp_set_num_threads(saved);
}
END_TEST

/* dst's parameters = src's, with the matrices quantized decode uses (qkvw, attprojw, fcw,
 * fcprojw, the tied wte) rounded through `type` and back: the weights a Q8_0 / Q4_0
 * decode of src multiplies by, in f32 */
static void round_trip_matrices(parlm_gpt *dst, parlm_gpt *src, int type)
{
    int64_t P = parlm_gpt_num_params(src);
    float *d = parlm_gpt_params(dst);
    memcpy(d, parlm_gpt_params(src), (size_t)P * sizeof(float));
    for (int i = 0; i < parlm_gpt_num_tensors(src); i++) {
        const char *name;
        int layer;
        int64_t off, n;
        ck_assert_int_eq(parlm_gpt_tensor_info(src, i, &name, &layer, &off, &n), PARLM_OK);
        if (strcmp(name, "qkvw") && strcmp(name, "attprojw") && strcmp(name, "fcw") &&
            strcmp(name, "fcprojw") && strcmp(name, "wte"))
            continue;
        uint64_t bytes;
        ck_assert_int_eq(parlm_wtype_bytes(type, (uint64_t)n, &bytes), PARLM_OK);
        void *q = malloc(bytes);
        ck_assert_int_eq(parlm_quantize(type, d + off, n, q), PARLM_OK);
        ck_assert_int_eq(parlm_dequantize(type, q, n, d + off), PARLM_OK);
        free(q);
    }
}

/* Decode on Q8_0 / Q4_0 weights (parlm_gpt_set_decode_type), in both layouts of the copy
 * (parlm_qlayout: plain rows and repacked 8 rows at a time): the same bits for 1-4
 * threads; against an f32 decode of the same weights rounded through the type, only the
 * 8-bit rounding of each product's input row is left (0.8% of the logits' range for
 * Q8_0, 1.9% for Q4_0 here; the bound is 3%), while it did move from the f32 decode of the
 * unrounded weights; the copy follows the parameters when they change; f32 turns it off. */
START_TEST(quantized_decode)
{
    int saved = omp_get_max_threads();
    const int T = 9, V = 50, C = 256, types[2] = {PARLM_WT_Q8_0, PARLM_WT_Q4_0};
    const parlm_qlayout layouts[2] = {PARLM_QLAYOUT_ROWS, PARLM_QLAYOUT_R8};
    parlm_qlayout chosen[2] = {parlm_qlayout_current(types[0], NULL),
                               parlm_qlayout_current(types[1], NULL)};
    for (int tl = 0; tl < 4; tl++) {
        int ti = tl / 2;
        ck_assert_int_eq(parlm_qlayout_select(types[ti], layouts[tl % 2]), PARLM_OK);
        parlm_gpt *m = tiny(2, 4, C, T, V, 0, 51), *r = tiny(2, 4, C, T, V, 0, 51);
        int Vp = parlm_gpt_get_config(m).vocab_pad;
        int64_t P = parlm_gpt_num_params(m);
        float *p = parlm_gpt_params(m);
        tu_fill(p, P, 53);
        for (int64_t i = 0; i < P; i++)
            p[i] *= 0.15f;
        int32_t in[9];
        random_tokens(in, T, V, 52);
        float *ref = malloc((size_t)T * Vp * sizeof(float)), *lg = malloc((size_t)Vp * sizeof(float));
        float *f32 = malloc((size_t)T * Vp * sizeof(float)), *own = malloc((size_t)T * Vp * sizeof(float));
        for (int round = 0; round < 2; round++) {
            if (round == 1) { /* new weights: the quantized copy must follow */
                p = parlm_gpt_params(m);
                for (int64_t i = 0; i < P; i++)
                    p[i] *= -1.25f;
            }
            omp_set_num_threads(1);
            float moved = 0.0f; /* round 0: from m's own f32 decode, before quantizing */
            for (int t = 0; round == 0 && t < T; t++)
                ck_assert_int_eq(parlm_gpt_infer(m, in + t, 1, t, own + (int64_t)t * Vp), PARLM_OK);
            round_trip_matrices(r, m, types[ti]);
            float range = 0.0f;
            for (int t = 0; t < T; t++) {
                ck_assert_int_eq(parlm_gpt_infer(r, in + t, 1, t, f32 + (int64_t)t * Vp), PARLM_OK);
                for (int i = 0; i < V; i++)
                    range = fmaxf(range, fabsf(f32[(int64_t)t * Vp + i]));
            }
            if (round == 0) /* round 1 relies on the copy noticing the new weights */
                ck_assert_int_eq(parlm_gpt_set_decode_type(m, types[ti]), PARLM_OK);
            float worst = 0.0f;
            for (int nt = 1; nt <= 4; nt++) {
                omp_set_num_threads(nt);
                for (int t = 0; t < T; t++) {
                    decode_vs_one_thread(m, in, t, nt, ref, lg, V, Vp, parlm_wtype_name(types[ti]));
                    worst = fmaxf(worst, tu_max_abs_diff(lg, f32 + (int64_t)t * Vp, V));
                    if (round == 0)
                        moved = fmaxf(moved, tu_max_abs_diff(lg, own + (int64_t)t * Vp, V));
                }
            }
            ck_assert_msg(worst <= 0.03f * range && worst > 0.0f, "%s %s round %d: %g from the "
                          "f32 decode of the rounded weights (range %g)",
                          parlm_wtype_name(types[ti]), parlm_qlayout_name(layouts[tl % 2]), round,
                          worst, range);
            ck_assert_msg(round > 0 || moved > 1e-3f * range, "%s: decode did not move from "
                          "f32 (%g): not quantized?", parlm_wtype_name(types[ti]), moved);
        }
        /* off again: the f32 decode of m's own weights, bit for bit */
        ck_assert_int_eq(parlm_gpt_set_decode_type(m, PARLM_WT_F32), PARLM_OK);
        omp_set_num_threads(1);
        memcpy(parlm_gpt_params(r), parlm_gpt_params(m), (size_t)P * sizeof(float));
        for (int t = 0; t < T; t++) {
            ck_assert_int_eq(parlm_gpt_infer(m, in + t, 1, t, lg), PARLM_OK);
            ck_assert_int_eq(parlm_gpt_infer(r, in + t, 1, t, ref), PARLM_OK);
            ck_assert(!memcmp(lg, ref, (size_t)V * sizeof(float)));
        }
        free(ref);
        free(lg);
        free(f32);
        free(own);
        parlm_gpt_free(m);
        parlm_gpt_free(r);
    }
    for (int ti = 0; ti < 2; ti++)
        ck_assert_int_eq(parlm_qlayout_select(types[ti], chosen[ti]), PARLM_OK);
    omp_set_num_threads(saved);
    /* bad input: a type decode does not take, widths that are no multiple of 32 */
    parlm_gpt *m = tiny(1, 2, 40, 4, 10, 0, 1);
    ck_assert_int_eq(parlm_gpt_set_decode_type(m, PARLM_WT_BF16), PARLM_EUNSUPPORTED);
    ck_assert_int_eq(parlm_gpt_set_decode_type(m, PARLM_WT_Q8_0), PARLM_EINVAL);
    ck_assert_msg(strstr(parlm_last_error(), "n_embd is 40"), "%s", parlm_last_error());
    ck_assert_int_eq(parlm_gpt_set_decode_type(NULL, PARLM_WT_Q8_0), PARLM_EINVAL);
    ck_assert_int_eq(parlm_gpt_set_decode_type(m, PARLM_WT_F32), PARLM_OK);
    parlm_gpt_free(m);
}
END_TEST

/* A bf16 prefill (several tokens in one parlm_gpt_infer) on either bf16 path gives the
 * last position's logits within 2% of the logits' range of the f32 forward: the one-row
 * LM head reads the bf16 copy, which must be current even when the GEMMs do not use it. */
START_TEST(bf16_prefill_matches_forward)
{
    const int T = 9, V = 50;
    for (int path = 0; path < 2; path++) {
        parlm_gpt *m = tiny(2, 2, 64, T, V, 0, 41);
        int Vp = parlm_gpt_get_config(m).vocab_pad;
        int32_t in[9];
        random_tokens(in, T, V, 42);
        ck_assert_int_eq(parlm_gpt_setup(m, 1, T, 0), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_forward(m, in, NULL, NULL), PARLM_OK);
        const float *full = parlm_gpt_logits(m) + (int64_t)(T - 1) * Vp;
        float range = 0.0f, *lg = malloc((size_t)Vp * sizeof(float));
        for (int i = 0; i < V; i++)
            range = fmaxf(range, fabsf(full[i]));
        ck_assert_int_eq(parlm_bf16_path_select(path ? PARLM_BF16_WIDEN : PARLM_BF16_DOT),
                         PARLM_OK);
        ck_assert_int_eq(parlm_gpt_set_bf16(m, 1), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_infer(m, in, T, 0, lg), PARLM_OK);
        float d = tu_max_abs_diff(lg, full, V);
        ck_assert_msg(d <= 0.02f * range && range > 0, "path %d: prefill logits %g from the "
                      "forward (range %g)", path, d, range);
        free(lg);
        parlm_gpt_free(m);
    }
}
END_TEST

/* bf16 matmuls on both paths: "dot" stays within 1% of the f32 loss (bf16 has 8 mantissa
 * bits, errors average out over K) and training with it still learns; "widen" runs the
 * GEMMs on the f32 weights: the f32 loss bit for bit. */
START_TEST(bf16_matmuls_track_f32)
{
    for (int path = 0; path < 2; path++) {
        parlm_gpt *m = tiny(2, 4, 64, 16, 64, 0, 13);
        int32_t in[4 * 16], tg[4 * 16];
        random_tokens(in, 64, 64, 13);
        random_tokens(tg, 64, 64, 14);
        ck_assert_int_eq(parlm_gpt_setup(m, 4, 16, 1), PARLM_OK);
        float *p = parlm_gpt_params(m);
        for (int64_t i = 0; i < parlm_gpt_num_params(m); i++)
            p[i] *= 4.0f;
        float lf, lb;
        ck_assert_int_eq(parlm_gpt_forward(m, in, tg, &lf), PARLM_OK);
        ck_assert_int_eq(parlm_bf16_path_select(path ? PARLM_BF16_WIDEN : PARLM_BF16_DOT),
                         PARLM_OK);
        ck_assert_int_eq(parlm_gpt_set_bf16(m, 1), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_forward(m, in, tg, &lb), PARLM_OK);
        if (path)
            ck_assert_msg(lf == lb, "widen: f32 %.9g bf16 %.9g", lf, lb);
        else
            ck_assert_msg(fabsf(lf - lb) < 0.01f * lf && lf != lb, "dot: f32 %f bf16 %f", lf,
                          lb);
        float last = train(m, in, tg, 100, 1e-2f);
        ck_assert_msg(last < 1.0f, "bf16 training loss %f", last);
        parlm_gpt_free(m);
    }
}
END_TEST

/* The sharded update (what ZeRO-1 runs on each rank) over any cut of the buffer equals
 * the full update bitwise: same per-element arithmetic, same decay flags. */
START_TEST(update_range_equals_update)
{
    parlm_gpt *a = tiny(2, 2, 16, 8, 20, 0, 21), *b = tiny(2, 2, 16, 8, 20, 0, 21);
    int64_t P = parlm_gpt_num_params(a);
    int32_t in[16], tg[16];
    random_tokens(in, 16, 20, 22);
    random_tokens(tg, 16, 20, 23);
    parlm_adamw_cfg opt = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f};
    float *m1 = calloc((size_t)P, 4), *m2 = calloc((size_t)P, 4), loss;
    const int64_t cuts[4] = {0, 1000, P / 2 + 3, P}; /* shards cut through tensors */
    ck_assert_int_eq(parlm_gpt_setup(a, 2, 8, 1), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_setup(b, 2, 8, 1), PARLM_OK);
    for (int step = 1; step <= 3; step++) {
        parlm_gpt *ms[2] = {a, b};
        for (int k = 0; k < 2; k++) {
            ck_assert_int_eq(parlm_gpt_zero_grad(ms[k]), PARLM_OK);
            ck_assert_int_eq(parlm_gpt_forward(ms[k], in, tg, &loss), PARLM_OK);
            ck_assert_int_eq(parlm_gpt_backward(ms[k], 1.0f), PARLM_OK);
        }
        ck_assert_int_eq(parlm_gpt_update(a, &opt, 0.5f), PARLM_OK);
        for (int s = 0; s < 3; s++)
            ck_assert_int_eq(parlm_gpt_update_range(b, &opt, 0.5f, step, cuts[s],
                                                    cuts[s + 1] - cuts[s], m1 + cuts[s],
                                                    m2 + cuts[s]), PARLM_OK);
    }
    ck_assert(memcmp(parlm_gpt_params(a), parlm_gpt_params(b), (size_t)P * 4) == 0);
    ck_assert(memcmp(parlm_gpt_adam_m(a), m1, (size_t)P * 4) == 0);
    ck_assert_int_eq(parlm_gpt_update_range(b, &opt, 1, 1, P - 5, 6, m1, m2), PARLM_EINVAL);
    free(m1);
    free(m2);
    parlm_gpt_free(a);
    parlm_gpt_free(b);
}
END_TEST

/* The fused optimizer step (norm pass only when clipping, then AdamW + zeroing in one
 * pass) against the unfused calls: parameters and moments bitwise equal over steps, with
 * clipping off and with clipping active; gradients left 0. The norm: bitwise equal with
 * clipping (both come from parlm_sumsq); without, the fused pass sums in another order:
 * relative 1e-6 (double sums of ~1e4 squares, rounded to float: a few 2^-24 at most). */
START_TEST(fused_step_equals_unfused)
{
    for (int c = 0; c < 2; c++) {
        float clip = c ? 0.05f : 0.0f; /* 0.05: far below this model's norms, so it clips */
        parlm_gpt *a = tiny(2, 2, 16, 8, 20, 0, 41), *b = tiny(2, 2, 16, 8, 20, 0, 41);
        int64_t P = parlm_gpt_num_params(a);
        int32_t in[16], tg[16];
        parlm_adamw_cfg opt = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f};
        ck_assert_int_eq(parlm_gpt_setup(a, 2, 8, 1), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_setup(b, 2, 8, 1), PARLM_OK);
        for (int step = 1; step <= 4; step++) {
            float loss, na, nb;
            random_tokens(in, 16, 20, 42 + (uint64_t)step);
            random_tokens(tg, 16, 20, 52 + (uint64_t)step);
            parlm_gpt *ms[2] = {a, b};
            for (int k = 0; k < 2; k++) {
                ck_assert_int_eq(parlm_gpt_zero_grad(ms[k]), PARLM_OK);
                ck_assert_int_eq(parlm_gpt_forward(ms[k], in, tg, &loss), PARLM_OK);
                ck_assert_int_eq(parlm_gpt_backward(ms[k], 1.0f), PARLM_OK);
            }
            ck_assert_int_eq(parlm_gpt_grad_norm(a, &na), PARLM_OK);
            ck_assert_int_eq(parlm_gpt_update(a, &opt, clip > 0 && na > clip ? clip / na : 1),
                             PARLM_OK);
            ck_assert_int_eq(parlm_gpt_optimizer_step(b, &opt, clip, &nb), PARLM_OK);
            ck_assert(c ? nb == na : fabsf(nb - na) <= 1e-6f * na);
            ck_assert(!c || na > clip);
            ck_assert_int_eq(parlm_gpt_get_step(b), step);
            ck_assert(memcmp(parlm_gpt_params(a), parlm_gpt_params(b), (size_t)P * 4) == 0);
            ck_assert(memcmp(parlm_gpt_adam_m(a), parlm_gpt_adam_m(b), (size_t)P * 4) == 0);
            ck_assert(memcmp(parlm_gpt_adam_v(a), parlm_gpt_adam_v(b), (size_t)P * 4) == 0);
            const float *g = parlm_gpt_grads(b);
            int zero = 1;
            for (int64_t i = 0; i < P; i++)
                zero &= g[i] == 0.0f;
            ck_assert_msg(zero, "the fused step left a gradient non-zero");
        }
        parlm_adamw_cfg bad = opt;
        bad.beta2 = 1.0f;
        float n;
        ck_assert_int_eq(parlm_gpt_optimizer_step(b, &bad, 0, &n), PARLM_EINVAL);
        ck_assert_int_eq(parlm_gpt_optimizer_step(b, &opt, -1, &n), PARLM_EINVAL);
        parlm_gpt_free(a);
        parlm_gpt_free(b);
    }
}
END_TEST

/* The backward hook reports ranges falling to 0 (repeats between ops are progress ticks),
 * and what it reports as final is. */
typedef struct hook_log {
    parlm_gpt *m;
    int64_t from[64];
    float *snap[64];
    int n;
} hook_log;

static void on_ready(int64_t from, int64_t head, void *arg)
{
    hook_log *h = arg;
    (void)head; /* 0: nothing is deferred here */
    int64_t P = parlm_gpt_num_params(h->m);
    if (h->n && from == h->from[h->n - 1])
        return; /* the same range again: a progress tick between ops */
    h->from[h->n] = from;
    h->snap[h->n] = malloc((size_t)(P - from) * 4);
    memcpy(h->snap[h->n], parlm_gpt_grads(h->m) + from, (size_t)(P - from) * 4);
    h->n++;
}

START_TEST(grad_hook_reports_final_ranges)
{
    parlm_gpt *m = tiny(3, 2, 16, 8, 20, 0, 31);
    int64_t P = parlm_gpt_num_params(m);
    hook_log h = {.m = m};
    int32_t in[16], tg[16];
    random_tokens(in, 16, 20, 32);
    random_tokens(tg, 16, 20, 33);
    float loss;
    ck_assert_int_eq(parlm_gpt_setup(m, 2, 8, 1), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_set_grad_hook(m, on_ready, &h), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_forward(m, in, tg, &loss), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_backward(m, 1.0f), PARLM_OK);
    ck_assert_int_eq(h.n, 3 + 2); /* final layernorm, 3 layers, embeddings */
    ck_assert_int_eq(h.from[h.n - 1], 0);
    for (int i = 0; i < h.n; i++) {
        if (i)
            ck_assert_int_lt(h.from[i], h.from[i - 1]);
        ck_assert(memcmp(h.snap[i], parlm_gpt_grads(m) + h.from[i], (size_t)(P - h.from[i]) * 4) == 0);
        free(h.snap[i]);
    }
    parlm_gpt_free(m);
}
END_TEST

/* Deferred token-lookup gradient: the wte gradient is reported final right after the LM
 * head (and is not touched again), and adding the rows afterwards gives exactly the
 * gradients of a plain backward. */
typedef struct head_log {
    parlm_gpt *m;
    int64_t head, first_from;
    float *snap;
} head_log;

static void on_head(int64_t from, int64_t head, void *arg)
{
    head_log *h = arg;
    if (head && !h->snap) {
        h->head = head;
        h->first_from = from;
        h->snap = malloc((size_t)head * 4);
        memcpy(h->snap, parlm_gpt_grads(h->m), (size_t)head * 4);
    }
}

START_TEST(deferred_token_grad_adds_up)
{
    parlm_gpt *a = tiny(2, 2, 16, 8, 20, 0, 41), *b = tiny(2, 2, 16, 8, 20, 0, 41);
    int64_t P = parlm_gpt_num_params(a);
    parlm_gpt_config cfg = parlm_gpt_get_config(a);
    int32_t in[16], tg[16];
    random_tokens(in, 16, 20, 42);
    random_tokens(tg, 16, 20, 43);
    float la, lb;
    head_log h = {.m = b};
    ck_assert_int_eq(parlm_gpt_setup(a, 2, 8, 1), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_setup(b, 2, 8, 1), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_set_grad_hook(b, on_head, &h), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_set_defer_token_grad(b, 1), PARLM_OK);
    for (int accum = 0; accum < 2; accum++) { /* the second backward accumulates */
        ck_assert_int_eq(parlm_gpt_forward(a, in, tg, &la), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_backward(a, 1.0f), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_forward(b, in, tg, &lb), PARLM_OK);
        const int32_t *tok;
        const float *rows;
        int64_t n;
        ck_assert_int_eq(parlm_gpt_token_grad_rows(b, &tok, &rows, &n), PARLM_EINVAL); /* not yet */
        free(h.snap);
        h.snap = NULL;
        ck_assert_int_eq(parlm_gpt_backward(b, 1.0f), PARLM_OK);
        ck_assert_int_eq(h.head, (int64_t)cfg.vocab_pad * cfg.n_embd);
        ck_assert_int_eq(h.first_from, P); /* before any layer */
        ck_assert(memcmp(h.snap, parlm_gpt_grads(b), (size_t)h.head * 4) == 0);
        ck_assert_int_eq(parlm_gpt_token_grad_rows(b, &tok, &rows, &n), PARLM_OK);
        ck_assert_int_eq(n, 16);
        ck_assert_ptr_eq(tok, in);
        /* a token outside the vocabulary is refused before anything is added */
        int32_t bad[2] = {tok[0], cfg.vocab};
        ck_assert_int_eq(parlm_gpt_token_grad_add(b, bad, rows, 2), PARLM_EINVAL);
        ck_assert_int_eq(parlm_gpt_token_grad_add(b, NULL, rows, 2), PARLM_EINVAL);
        ck_assert(memcmp(h.snap, parlm_gpt_grads(b), (size_t)h.head * 4) == 0);
        ck_assert_int_eq(parlm_gpt_token_grad_add(b, tok, rows, n), PARLM_OK);
        ck_assert(memcmp(parlm_gpt_grads(a), parlm_gpt_grads(b), (size_t)P * 4) == 0);
    }
    free(h.snap);
    parlm_gpt_free(a);
    parlm_gpt_free(b);
}
END_TEST

/* the first backward after a step writes over the step's stale gradients */
START_TEST(backward_overwrites_stale_gradients)
{
    parlm_gpt *a = tiny(2, 2, 16, 8, 20, 24, 71), *b = tiny(2, 2, 16, 8, 20, 24, 71);
    ck_assert_int_eq(parlm_gpt_setup(a, 2, 8, 1), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_setup(b, 2, 8, 1), PARLM_OK);
    stale_check_model(a, b, 2, 8, 20, "gpt2");
    parlm_gpt_free(a);
    parlm_gpt_free(b);
}
END_TEST

/* gradients moved into a caller's buffer and back are kept, and backward writes there */
START_TEST(grad_buffer_moves)
{
    parlm_gpt *m = tiny(2, 2, 16, 8, 20, 0, 51), *ref = tiny(2, 2, 16, 8, 20, 0, 51);
    int64_t P = parlm_gpt_num_params(m);
    int32_t in[16], tg[16];
    random_tokens(in, 16, 20, 52);
    random_tokens(tg, 16, 20, 53);
    float loss;
    float *buf = parlm_alloc((size_t)P, 4);
    ck_assert_int_eq(parlm_gpt_set_grad_buffer(m, buf + 1), PARLM_EINVAL); /* unaligned */
    for (parlm_gpt *x = m; x; x = x == m ? ref : NULL) {
        ck_assert_int_eq(parlm_gpt_setup(x, 2, 8, 1), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_forward(x, in, tg, &loss), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_backward(x, 1.0f), PARLM_OK);
    }
    ck_assert_int_eq(parlm_gpt_set_grad_buffer(m, buf), PARLM_OK);
    ck_assert_ptr_eq(parlm_gpt_grads(m), buf);
    ck_assert(memcmp(buf, parlm_gpt_grads(ref), (size_t)P * 4) == 0);
    /* a second micro-batch accumulates into the caller's buffer */
    for (parlm_gpt *x = m; x; x = x == m ? ref : NULL) {
        ck_assert_int_eq(parlm_gpt_forward(x, tg, in, &loss), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_backward(x, 1.0f), PARLM_OK);
    }
    ck_assert(memcmp(buf, parlm_gpt_grads(ref), (size_t)P * 4) == 0);
    ck_assert_int_eq(parlm_gpt_set_grad_buffer(m, NULL), PARLM_OK);
    ck_assert_ptr_ne(parlm_gpt_grads(m), buf);
    ck_assert(memcmp(parlm_gpt_grads(m), parlm_gpt_grads(ref), (size_t)P * 4) == 0);
    parlm_free(buf);
    parlm_gpt_free(m);
    parlm_gpt_free(ref);
}
END_TEST

START_TEST(bad_input)
{
    parlm_gpt_config cfg = {.n_layer = 2, .n_head = 3, .n_embd = 64, .max_seq = 16, .vocab = 50};
    parlm_gpt *m;
    ck_assert_int_eq(parlm_gpt_create(&m, &cfg, 1), PARLM_EINVAL); /* 64 % 3 */
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "heads"));
    cfg.n_head = 2;
    cfg.vocab_pad = 10;
    ck_assert_int_eq(parlm_gpt_create(&m, &cfg, 1), PARLM_EINVAL); /* Vp < V */
    cfg.vocab_pad = 0;
    ck_assert_int_eq(parlm_gpt_create(NULL, &cfg, 1), PARLM_EINVAL);
    ck_assert_int_eq(parlm_gpt_preset("d13", &cfg), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "d13"));
    ck_assert_int_eq(parlm_gpt_preset("d12", &cfg), PARLM_OK);
    ck_assert_int_eq(cfg.n_embd, 768);
    cfg = (parlm_gpt_config){.n_layer = 2, .n_head = 2, .n_embd = 16, .max_seq = 8, .vocab = 20};
    ck_assert_int_eq(parlm_gpt_create(&m, &cfg, 1), PARLM_OK);
    int32_t in[8] = {0, 1, 2, 3, 4, 5, 6, 7}, tg[8] = {1, 2, 3, 4, 5, 6, 7, 20};
    float loss;
    ck_assert_int_eq(parlm_gpt_forward(m, in, tg, &loss), PARLM_EINVAL); /* no setup */
    ck_assert_int_eq(parlm_gpt_setup(m, 1, 9, 1), PARLM_EINVAL);         /* T > maxT */
    ck_assert_int_eq(parlm_gpt_setup(m, 1, 8, 1), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_backward(m, 1.0f), PARLM_EINVAL);         /* no forward */
    ck_assert_int_eq(parlm_gpt_forward(m, in, tg, &loss), PARLM_EINVAL); /* target 20 >= V */
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "20"));
    in[3] = -1;
    ck_assert_int_eq(parlm_gpt_forward(m, in, NULL, NULL), PARLM_EINVAL);
    parlm_gpt_free(m);
    parlm_gpt_free(NULL);
}
END_TEST

/* Llama configs: the presets' sizes, parameter counts by hand, defaults and the rules. */
START_TEST(llama_config)
{
    parlm_gpt_config c = {0};
    int64_t n;
    ck_assert_int_eq(parlm_gpt_preset("tinyllama-1.1b", &c), PARLM_OK);
    ck_assert_int_eq(c.arch, PARLM_ARCH_LLAMA);
    ck_assert_int_eq(c.vocab, 32000);
    ck_assert_int_eq(c.max_seq, 2048);
    ck_assert_int_eq(parlm_gpt_config_num_params(&c, &n), PARLM_OK);
    /* 2 x 32000 x 2048 (embedding, untied head) + 22 (2 x 2048 norms + 2 x 2048^2 (q, o)
     * + 2 x 2048 x 256 (k, v: 4 KV heads of 64) + 3 x 2048 x 5632 (SwiGLU)) + 2048 */
    ck_assert_int_eq(n, 1100048384LL);
    ck_assert_int_eq(parlm_gpt_preset("llama-110m", &c), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_config_num_params(&c, &n), PARLM_OK);
    ck_assert_int_eq(n, 32000LL * 768 + 12 * (2 * 768 + 4LL * 768 * 768 + 3LL * 768 * 2048) + 768);
    /* a preset resets what it does not set, and keeps max_seq and vocab */
    c = (parlm_gpt_config){.max_seq = 64, .vocab = 300, .rope_theta = 5e5f, .untied_head = 1};
    ck_assert_int_eq(parlm_gpt_preset("llama-15m", &c), PARLM_OK);
    ck_assert(c.max_seq == 64 && c.vocab == 300 && c.n_kv_head == 2 && c.ffn_hidden == 768);
    ck_assert(c.rope_theta == 0.0f && c.untied_head == 0);
    ck_assert_int_eq(parlm_gpt_preset("d12", &c), PARLM_OK);
    ck_assert(c.arch == PARLM_ARCH_GPT2 && c.n_kv_head == 0 && c.ffn_hidden == 0);
    /* rules, each named */
    c = (parlm_gpt_config){.n_layer = 1, .n_head = 6, .n_embd = 48, .max_seq = 8, .vocab = 20,
                           .arch = PARLM_ARCH_LLAMA, .n_kv_head = 4};
    ck_assert_int_eq(parlm_gpt_config_num_params(&c, &n), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "4 KV heads"));
    c.n_kv_head = 3; /* defaults: F = 4C, theta 10000, scale 1, eps 1e-5 */
    ck_assert_int_eq(parlm_gpt_config_num_params(&c, &n), PARLM_OK);
    ck_assert_int_eq(n, 128 * 48 + (2 * 48 + 2 * 48 * 48 + 2 * 48 * 24 + 3 * 48 * 192) + 48);
    c.rope_scale = 0.5f;
    ck_assert_int_eq(parlm_gpt_config_num_params(&c, &n), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "rope_scale"));
    c.rope_scale = 0.0f;
    c.arch = 7;
    ck_assert_int_eq(parlm_gpt_config_num_params(&c, &n), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "architecture 7"));
    c.arch = PARLM_ARCH_GPT2; /* a GPT-2 config with a Llama field */
    ck_assert_int_eq(parlm_gpt_config_num_params(&c, &n), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "GPT-2 config"));
}
END_TEST

/* Sampling: greedy is the argmax; top-k and top-p never return a token outside their
 * set; and the empirical frequencies over 40000 draws match softmax(logits / T) within
 * 5 standard deviations of a binomial count (sqrt(n p (1-p))). */
START_TEST(sampling)
{
    float logits[6] = {1.0f, 3.0f, 2.0f, -1.0f, 2.5f, 0.0f};
    uint64_t rng = 1;
    int32_t t;
    ck_assert_int_eq(parlm_sample(logits, 6, 0.0f, 0, 1.0f, &rng, &t), PARLM_OK);
    ck_assert_int_eq(t, 1);
    ck_assert_int_eq(parlm_sample(logits, 6, 1.0f, 1, 1.0f, &rng, &t), PARLM_OK);
    ck_assert_int_eq(t, 1);
    int counts[6] = {0};
    const int n = 40000;
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(parlm_sample(logits, 6, 0.7f, 0, 1.0f, &rng, &t), PARLM_OK);
        counts[t]++;
    }
    double z = 0;
    for (int j = 0; j < 6; j++)
        z += exp(logits[j] / 0.7);
    for (int j = 0; j < 6; j++) {
        double p = exp(logits[j] / 0.7) / z, sd = sqrt(n * p * (1 - p));
        ck_assert_msg(fabs(counts[j] - n * p) <= 5 * sd + 1, "token %d: %d draws, expected %.0f",
                      j, counts[j], n * p);
    }
    for (int i = 0; i < 2000; i++) { /* top-k 2: only tokens 1 and 4 */
        ck_assert_int_eq(parlm_sample(logits, 6, 1.0f, 2, 1.0f, &rng, &t), PARLM_OK);
        ck_assert(t == 1 || t == 4);
    }
    /* top-p 0.5 at T=1: p(1) = 0.46 < 0.5, p(1) + p(4) = 0.74 >= 0.5 -> {1, 4} */
    for (int i = 0; i < 2000; i++) {
        ck_assert_int_eq(parlm_sample(logits, 6, 1.0f, 0, 0.5f, &rng, &t), PARLM_OK);
        ck_assert(t == 1 || t == 4);
    }
    ck_assert_int_eq(parlm_sample(logits, 6, -1.0f, 0, 1.0f, &rng, &t), PARLM_EINVAL);
    ck_assert_int_eq(parlm_sample(logits, 6, 1.0f, 0, 0.0f, &rng, &t), PARLM_EINVAL);
    ck_assert_int_eq(parlm_sample(NULL, 6, 1.0f, 0, 1.0f, &rng, &t), PARLM_EINVAL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("gradients");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, gradients_match_finite_differences);
    suite_add_tcase(s, tc);
    tc = tcase_create("training");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, loss_at_init_is_ln_v);
    tcase_add_test(tc, overfits_one_batch);
    tcase_add_test(tc, training_is_deterministic);
    tcase_add_test(tc, bf16_matmuls_track_f32);
    tcase_add_test(tc, bf16_prefill_matches_forward);
    tcase_add_test(tc, update_range_equals_update);
    tcase_add_test(tc, fused_step_equals_unfused);
    tcase_add_test(tc, grad_hook_reports_final_ranges);
    tcase_add_test(tc, deferred_token_grad_adds_up);
    tcase_add_test(tc, grad_buffer_moves);
    tcase_add_test(tc, backward_overwrites_stale_gradients);
    suite_add_tcase(s, tc);
    tc = tcase_create("generation");
    tcase_add_test(tc, kv_cache_matches_forward);
    tcase_add_test(tc, decode_is_independent_of_threads);
    tcase_add_test(tc, quantized_decode);
    tcase_add_test(tc, sampling);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, bad_input);
    tcase_add_test(tc, llama_config);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
