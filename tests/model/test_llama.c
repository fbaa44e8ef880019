/* tests/model/test_llama.c — the Llama configuration of the model code end to end:
 * finite-difference gradients of every parameter (tied and untied head, grouped-query
 * attention), loss at init ~ ln(V), overfitting one batch, KV-cache generation equal to
 * the full forward, bf16 matmuls, Q8_0/Q4_0 decode, the tensor table, shards and bad
 * configs (tensor parallelism and pipelines run in tests/parallel/test_tp and test_pp). */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parlm.h"
#include "../testutil.h"
#include "model_check.h"

/* a Llama config: L layers, NH heads on NKV key/value heads, C channels, F SwiGLU units */
static parlm_gpt_config llama_cfg(int L, int NH, int NKV, int C, int F, int maxT, int V, int Vp,
                                  int untied)
{
    parlm_gpt_config c = {.n_layer = L, .n_head = NH, .n_embd = C, .max_seq = maxT,
                          .vocab = V, .vocab_pad = Vp, .arch = PARLM_ARCH_LLAMA,
                          .n_kv_head = NKV, .ffn_hidden = F, .untied_head = untied};
    return c;
}

static parlm_gpt *llama(parlm_gpt_config c, uint64_t seed)
{
    parlm_gpt *m;
    ck_assert_msg(parlm_gpt_create(&m, &c, seed) == PARLM_OK, "%s", parlm_last_error());
    return m;
}

/* Central differences on every parameter, as the GPT-2 check of test_model.c: weights
 * re-drawn with std 0.3 so every gradient is well above the float rounding of the loss;
 * h = 1e-2, |fd - an| <= 2e-3 + 3e-2 |an| per parameter, padded vocabulary rows of wte
 * (and of the untied head) get exactly 0. 4 query heads on 2 key/value heads, theta 100
 * so that the rotation angles of positions 0..4 are large in every pair. */
static void gradcheck(parlm_isa isa, int untied)
{
    ck_assert_int_eq(parlm_isa_select(isa), PARLM_OK);
    const int B = 2, T = 5, V = 11, Vp = 16, C = 16;
    parlm_gpt_config cfg = llama_cfg(2, 4, 2, C, 24, 6, V, Vp, untied);
    cfg.rope_theta = 100.0f;
    parlm_gpt *m = llama(cfg, 1);
    int64_t P = parlm_gpt_num_params(m);
    float *p = parlm_gpt_params(m);
    tu_fill(p, P, 99);
    for (int64_t i = 0; i < P; i++)
        p[i] *= 0.3f * 1.7320508f; /* uniform with std 0.3 */
    /* padded rows: of wte (tensor 0) and of the head (the last tensor) */
    int64_t hoff = 0;
    int nt = parlm_gpt_num_tensors(m);
    ck_assert_int_eq(parlm_gpt_tensor_info(m, nt - 1, NULL, NULL, &hoff, NULL), PARLM_OK);
    memset(p + (int64_t)V * C, 0, (size_t)(Vp - V) * C * sizeof(float));
    if (untied)
        memset(p + hoff + (int64_t)V * C, 0, (size_t)(Vp - V) * C * sizeof(float));
    int32_t in[10], tg[10];
    random_tokens(in, B * T, V, 1);
    random_tokens(tg, B * T, V, 2);
    ck_assert_int_eq(parlm_gpt_setup(m, B, T, 1), PARLM_OK);
    char tag[64];
    snprintf(tag, sizeof tag, "%s untied=%d", parlm_isa_name(isa), untied);
    float *g = fd_check_model(m, in, tg, tag);
    for (int64_t i = (int64_t)V * C; i < (int64_t)Vp * C; i++) {
        ck_assert_msg(g[i] == 0.0f, "padded vocab gradient %lld = %g", (long long)i, g[i]);
        if (untied)
            ck_assert_msg(g[hoff + i] == 0.0f, "padded head gradient %lld", (long long)i);
    }
    free(g);
    parlm_gpt_free(m);
}

START_TEST(llama_gradients_match_finite_differences)
{
    parlm_isa best = parlm_isa_current();
    for (int untied = 0; untied <= 1; untied++) {
        gradcheck(PARLM_ISA_SCALAR, untied);
        gradcheck(best, untied);
    }
    parlm_isa_select(best);
}
END_TEST

/* The parameter tensors in buffer order, with the names llama.cpp and HF use in spirit,
 * and the count parlm_gpt_config_num_params gives. */
START_TEST(llama_tensor_table)
{
    static const char *const layer[] = {"attn_norm", "wq", "wk", "wv", "wo",
                                        "ffn_norm", "w_gate", "w_up", "w_down"};
    for (int untied = 0; untied <= 1; untied++) {
        parlm_gpt_config cfg = llama_cfg(3, 6, 2, 48, 40, 8, 100, 0, untied);
        parlm_gpt *m = llama(cfg, 3);
        int64_t want, off = 0, sum = 0, cnt;
        ck_assert_int_eq(parlm_gpt_config_num_params(&cfg, &want), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_num_params(m), want);
        int nt = parlm_gpt_num_tensors(m);
        ck_assert_int_eq(nt, 1 + 9 * 3 + 1 + untied);
        const char *nm;
        int l;
        for (int i = 0; i < nt; i++) {
            ck_assert_int_eq(parlm_gpt_tensor_info(m, i, &nm, &l, &off, &cnt), PARLM_OK);
            ck_assert_int_eq(off, sum); /* contiguous, in order */
            sum += cnt;
            if (i == 0)
                ck_assert_str_eq(nm, "wte");
            else if (i <= 27)
                ck_assert_str_eq(nm, layer[(i - 1) % 9]);
            else
                ck_assert_str_eq(nm, i == 28 ? "norm" : "lm_head");
        }
        ck_assert_int_eq(sum, want);
        /* wk: 2 KV heads of 8 x 48 inputs; w_down: 48 x 40 */
        ck_assert_int_eq(parlm_gpt_tensor_info(m, 3, &nm, &l, &off, &cnt), PARLM_OK);
        ck_assert(!strcmp(nm, "wk") && cnt == 16 * 48 && l == 0);
        ck_assert_int_eq(parlm_gpt_tensor_info(m, 9, &nm, &l, &off, &cnt), PARLM_OK);
        ck_assert(!strcmp(nm, "w_down") && cnt == 48 * 40);
        /* init: norms 1, weights N(0, 0.02) (std within 10% on 2304 values) */
        const float *p = parlm_gpt_params(m);
        ck_assert_int_eq(parlm_gpt_tensor_info(m, 1, NULL, NULL, &off, &cnt), PARLM_OK);
        for (int64_t i = 0; i < cnt; i++)
            ck_assert(p[off + i] == 1.0f);
        ck_assert_int_eq(parlm_gpt_tensor_info(m, 2, NULL, NULL, &off, &cnt), PARLM_OK);
        double ss = 0;
        for (int64_t i = 0; i < cnt; i++)
            ss += (double)p[off + i] * p[off + i];
        ck_assert_msg(fabs(sqrt(ss / cnt) - 0.02) < 0.002, "wq std %g", sqrt(ss / cnt));
        parlm_gpt_free(m);
    }
}
END_TEST

static float train(parlm_gpt *m, const int32_t *in, const int32_t *tg, int steps, float lr)
{
    parlm_adamw_cfg opt = {lr, 0.9f, 0.95f, 1e-8f, 0.0f};
    float loss = 0, norm;
    for (int s = 0; s < steps; s++) {
        ck_assert_int_eq(parlm_gpt_forward(m, in, tg, &loss), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_zero_grad(m), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_backward(m, 1.0f), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_optimizer_step(m, &opt, 1.0f, &norm), PARLM_OK);
        ck_assert(isfinite(norm));
    }
    return loss;
}

/* At init a logit is a dot of an RMS-normalized (unit RMS) row with a N(0, 0.02) head row:
 * std 0.02 sqrt(64) = 0.16, so the loss is ln V + 0.013 up to ~0.014 of sampling noise
 * over 128 targets: 0.1 is 5 sigma. Then a ~100k-parameter Llama memorizes one batch of
 * 64 random tokens: from ln(64) = 4.16 below 0.5 within 150 AdamW steps. */
START_TEST(llama_trains)
{
    for (int untied = 0; untied <= 1; untied++) {
        parlm_gpt *m = llama(llama_cfg(2, 4, 2, 64, 128, 32, 256, 0, untied), 3);
        int32_t in[4 * 32], tg[4 * 32];
        random_tokens(in, 128, 256, 3);
        random_tokens(tg, 128, 256, 4);
        ck_assert_int_eq(parlm_gpt_setup(m, 4, 32, 0), PARLM_OK);
        float loss;
        ck_assert_int_eq(parlm_gpt_forward(m, in, tg, &loss), PARLM_OK);
        ck_assert_msg(fabsf(loss - logf(256.0f)) < 0.1f, "loss %f, ln V %f", loss, logf(256.0f));
        parlm_gpt_free(m);

        m = llama(llama_cfg(2, 4, 2, 64, 128, 16, 64, 0, untied), 5);
        random_tokens(in, 64, 64, 5);
        random_tokens(tg, 64, 64, 6);
        ck_assert_int_eq(parlm_gpt_setup(m, 4, 16, 1), PARLM_OK);
        float first;
        ck_assert_int_eq(parlm_gpt_forward(m, in, tg, &first), PARLM_OK);
        float last = train(m, in, tg, 150, 1e-2f);
        ck_assert_msg(last < 0.5f, "untied=%d: loss %f -> %f after 150 steps", untied, first,
                      last);
        parlm_gpt_free(m);
    }
}
END_TEST

/* the first backward after a step writes over the step's stale gradients (model_check.h):
 * tied head, and untied (the lookup's gradient is then a sum of rows, cleared) */
START_TEST(llama_backward_overwrites_stale_gradients)
{
    for (int untied = 0; untied <= 1; untied++) {
        parlm_gpt_config cfg = llama_cfg(2, 4, 2, 16, 24, 8, 20, 24, untied);
        parlm_gpt *a = llama(cfg, 7), *b = llama(cfg, 7);
        ck_assert_int_eq(parlm_gpt_setup(a, 2, 8, 1), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_setup(b, 2, 8, 1), PARLM_OK);
        stale_check_model(a, b, 2, 8, 20, untied ? "llama untied" : "llama tied");
        parlm_gpt_free(a);
        parlm_gpt_free(b);
    }
}
END_TEST

/* Generation with the KV cache (a prefill of 5 tokens, then one token at a time, rotary
 * positions from the cache's position) gives the logits of the full forward at the same
 * positions: the same terms in other blockings, 1e-4 on logits of size ~1. */
START_TEST(llama_kv_cache_matches_forward)
{
    parlm_isa best = parlm_isa_current();
    for (int pass = 0; pass < 4; pass++) {
        parlm_isa_select(pass & 1 ? best : PARLM_ISA_SCALAR);
        parlm_gpt_config cfg = llama_cfg(2, 4, pass < 2 ? 2 : 1, 32, 48, 16, 40, 0, pass >= 2);
        cfg.rope_scale = pass >= 2 ? 2.0f : 0.0f;
        parlm_gpt *m = llama(cfg, 11);
        char tag[32];
        snprintf(tag, sizeof tag, "pass %d", pass);
        kv_check_model(m, 12, tag);
        parlm_gpt_free(m);
    }
    parlm_isa_select(best);
}
END_TEST

/* bf16 matmuls: the "dot" path within 1% of the f32 loss and training still learns;
 * "widen" runs the GEMMs on the f32 weights: the same loss bit for bit. Decode on the
 * bf16 weight copy stays within 2% of the range of the f32 logits. */
START_TEST(llama_bf16)
{
    for (int path = 0; path < 2; path++) {
        parlm_gpt *m = llama(llama_cfg(2, 4, 2, 64, 128, 16, 64, 0, 1), 13);
        int32_t in[4 * 16], tg[4 * 16];
        random_tokens(in, 64, 64, 13);
        random_tokens(tg, 64, 64, 14);
        ck_assert_int_eq(parlm_gpt_setup(m, 4, 16, 1), PARLM_OK);
        float *p = parlm_gpt_params(m);
        for (int64_t i = 0; i < parlm_gpt_num_params(m); i++)
            p[i] *= 4.0f;
        float lf, lb;
        ck_assert_int_eq(parlm_gpt_forward(m, in, tg, &lf), PARLM_OK);
        int Vp = parlm_gpt_get_config(m).vocab_pad;
        float *ref = malloc((size_t)Vp * sizeof(float)), *lg = malloc((size_t)Vp * sizeof(float));
        ck_assert_int_eq(parlm_gpt_infer(m, in, 9, 0, ref), PARLM_OK);
        ck_assert_int_eq(parlm_bf16_path_select(path ? PARLM_BF16_WIDEN : PARLM_BF16_DOT),
                         PARLM_OK);
        ck_assert_int_eq(parlm_gpt_set_bf16(m, 1), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_forward(m, in, tg, &lb), PARLM_OK);
        if (path)
            ck_assert_msg(lf == lb, "widen: f32 %.9g bf16 %.9g", lf, lb);
        else
            ck_assert_msg(fabsf(lf - lb) < 0.01f * lf && lf != lb, "dot: f32 %f bf16 %f", lf,
                          lb);
        ck_assert_int_eq(parlm_gpt_infer(m, in, 8, 0, lg), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_infer(m, in + 8, 1, 8, lg), PARLM_OK);
        float range = 0.0f;
        for (int i = 0; i < 64; i++)
            range = fmaxf(range, fabsf(ref[i]));
        ck_assert_msg(tu_max_abs_diff(lg, ref, 64) <= 0.02f * range, "bf16 decode %g of %g",
                      tu_max_abs_diff(lg, ref, 64), range);
        float last = train(m, in, tg, 100, 1e-2f);
        ck_assert_msg(last < 1.0f, "bf16 training loss %f", last);
        free(ref), free(lg);
        parlm_gpt_free(m);
    }
}
END_TEST

/* Decode on Q8_0 / Q4_0 weights: against the f32 decode of the same weights rounded
 * through the type, only the 8-bit rounding of each product's input row is left (bound 3%
 * of the logits' range, as for GPT-2 in test_model.c), while it did move from the f32
 * decode of the unrounded weights; the prefill stays f32; the bits do not depend on the
 * thread count. Both layouts of the quantized copy (plain rows, repacked by 8). */
START_TEST(llama_quantized_decode)
{
    const int T = 9, V = 50, types[2] = {PARLM_WT_Q8_0, PARLM_WT_Q4_0};
    static const char *const mats[] = {"wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down",
                                       "lm_head"};
    parlm_qlayout chosen[2] = {parlm_qlayout_current(types[0], NULL),
                               parlm_qlayout_current(types[1], NULL)};
    for (int tl = 0; tl < 4; tl++) { /* each type in both layouts: plain rows, repacked by 8 */
        int ti = tl / 2;
        ck_assert_int_eq(parlm_qlayout_select(types[ti], tl % 2 ? PARLM_QLAYOUT_R8
                                                                : PARLM_QLAYOUT_ROWS),
                         PARLM_OK);
        parlm_gpt_config cfg = llama_cfg(2, 4, 2, 128, 96, T, V, 0, 1);
        parlm_gpt *m = llama(cfg, 51), *r = llama(cfg, 51);
        int Vp = parlm_gpt_get_config(m).vocab_pad;
        int64_t P = parlm_gpt_num_params(m);
        float *p = parlm_gpt_params(m);
        tu_fill(p, P, 53);
        for (int64_t i = 0; i < P; i++)
            p[i] = p[i] * 0.15f + (i % 7 == 0 ? 0.5f : 0.0f);
        /* r: m's weights with every decoded matrix rounded through the type */
        float *d = parlm_gpt_params(r);
        memcpy(d, p, (size_t)P * sizeof(float));
        for (int i = 0; i < parlm_gpt_num_tensors(r); i++) {
            const char *name;
            int64_t off, n;
            int hit = 0;
            ck_assert_int_eq(parlm_gpt_tensor_info(r, i, &name, NULL, &off, &n), PARLM_OK);
            for (int k = 0; k < 8; k++)
                hit |= !strcmp(name, mats[k]);
            if (!hit)
                continue;
            uint64_t bytes;
            ck_assert_int_eq(parlm_wtype_bytes(types[ti], (uint64_t)n, &bytes), PARLM_OK);
            void *q = malloc(bytes);
            ck_assert_int_eq(parlm_quantize(types[ti], d + off, n, q), PARLM_OK);
            ck_assert_int_eq(parlm_dequantize(types[ti], q, n, d + off), PARLM_OK);
            free(q);
        }
        int32_t in[9];
        random_tokens(in, T, V, 52);
        float *own = malloc((size_t)Vp * sizeof(float)), *ref = malloc((size_t)Vp * sizeof(float));
        float *lg = malloc((size_t)Vp * sizeof(float)), *lg1 = malloc((size_t)Vp * sizeof(float));
        float worst = 0, moved = 0, range = 0;
        ck_assert_int_eq(parlm_gpt_infer(m, in, 4, 0, own), PARLM_OK); /* f32 prefill */
        ck_assert_int_eq(parlm_gpt_infer(r, in, 4, 0, ref), PARLM_OK);
        for (int t = 4; t < T; t++) {
            ck_assert_int_eq(parlm_gpt_set_decode_type(m, PARLM_WT_F32), PARLM_OK);
            ck_assert_int_eq(parlm_gpt_infer(m, in + t, 1, t, own), PARLM_OK);
            ck_assert_int_eq(parlm_gpt_infer(r, in + t, 1, t, ref), PARLM_OK);
            ck_assert_int_eq(parlm_gpt_set_decode_type(m, types[ti]), PARLM_OK);
            omp_set_num_threads(1);
            ck_assert_int_eq(parlm_gpt_infer(m, in + t, 1, t, lg1), PARLM_OK);
            omp_set_num_threads(2);
            ck_assert_int_eq(parlm_gpt_infer(m, in + t, 1, t, lg), PARLM_OK);
            ck_assert_msg(!memcmp(lg, lg1, (size_t)V * sizeof(float)), "threads changed bits");
            for (int i = 0; i < V; i++)
                range = fmaxf(range, fabsf(ref[i]));
            worst = fmaxf(worst, tu_max_abs_diff(lg, ref, V));
            moved = fmaxf(moved, tu_max_abs_diff(lg, own, V));
        }
        ck_assert_msg(worst <= 0.03f * range && worst > 0.0f, "%s: %g from the f32 decode of "
                      "the rounded weights (range %g)", parlm_wtype_name(types[ti]), worst, range);
        ck_assert_msg(moved > 1e-3f * range, "%s: decode did not move from f32 (%g): not "
                      "quantized?", parlm_wtype_name(types[ti]), moved);
        /* a prefill with the type set stays on the f32 weights: bitwise the f32 one */
        ck_assert_int_eq(parlm_gpt_infer(m, in, T, 0, lg), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_set_decode_type(m, PARLM_WT_F32), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_infer(m, in, T, 0, lg1), PARLM_OK);
        ck_assert_msg(!memcmp(lg, lg1, (size_t)V * sizeof(float)), "the prefill changed");
        free(own), free(ref), free(lg), free(lg1);
        parlm_gpt_free(m);
        parlm_gpt_free(r);
    }
    for (int ti = 0; ti < 2; ti++)
        ck_assert_int_eq(parlm_qlayout_select(types[ti], chosen[ti]), PARLM_OK);
}
END_TEST

/* Shards: tensor parallelism needs whole KV heads per rank; pipeline stages hold their
 * layers and the ends' tensors. Quantized decode needs widths in blocks of 32. */
START_TEST(llama_shards_and_bad_configs)
{
    parlm_gpt_config cfg = llama_cfg(2, 4, 2, 64, 128, 16, 64, 0, 0);
    parlm_gpt_shard tp = {4, 0, 0, 2}, pp = {1, 0, 0, 1};
    parlm_gpt *m = NULL;
    /* tensor parallelism needs whole key/value heads per shard */
    ck_assert_int_eq(parlm_gpt_create_shard(&m, &cfg, &tp, 1), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "2 key/value heads"));
    ck_assert_ptr_null(m);
    /* a pipeline stage of an untied model: the head on the last stage only */
    ck_assert_int_eq(parlm_gpt_create_shard(&m, &cfg, &pp, 1), PARLM_OK);
    const char *nm;
    ck_assert_int_eq(parlm_gpt_num_tensors(m), 1 + 9);
    ck_assert_int_eq(parlm_gpt_tensor_info(m, 0, &nm, NULL, NULL, NULL), PARLM_OK);
    ck_assert_str_eq(nm, "wte");
    parlm_gpt_free(m);
    pp.layer_begin = 1, pp.layer_end = 2;
    cfg.untied_head = 1;
    ck_assert_int_eq(parlm_gpt_create_shard(&m, &cfg, &pp, 1), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_num_tensors(m), 9 + 2);
    ck_assert_int_eq(parlm_gpt_tensor_info(m, 0, &nm, NULL, NULL, NULL), PARLM_OK);
    ck_assert_str_eq(nm, "attn_norm");
    ck_assert_int_eq(parlm_gpt_tensor_info(m, 10, &nm, NULL, NULL, NULL), PARLM_OK);
    ck_assert_str_eq(nm, "lm_head");
    parlm_gpt_free(m);
    m = NULL;
    cfg.untied_head = 0;
    /* quantized decode needs ffn_hidden in blocks of 32 */
    cfg.ffn_hidden = 100;
    m = llama(cfg, 1);
    ck_assert_int_eq(parlm_gpt_set_decode_type(m, PARLM_WT_Q8_0), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "ffn_hidden is 100"));
    /* an odd head size cannot rotate pairs */
    parlm_gpt_free(m);
    cfg = llama_cfg(1, 4, 2, 20, 8, 8, 10, 0, 0);
    ck_assert_int_eq(parlm_gpt_create(&m, &cfg, 1), PARLM_EINVAL);
    ck_assert_ptr_null(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("llama");
    TCase *tc = tcase_create("llama_gradients");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, llama_gradients_match_finite_differences);
    suite_add_tcase(s, tc);
    tc = tcase_create("llama_model");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, llama_tensor_table);
    tcase_add_test(tc, llama_trains);
    tcase_add_test(tc, llama_backward_overwrites_stale_gradients);
    tcase_add_test(tc, llama_kv_cache_matches_forward);
    tcase_add_test(tc, llama_bf16);
    tcase_add_test(tc, llama_quantized_decode);
    tcase_add_test(tc, llama_shards_and_bad_configs);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
