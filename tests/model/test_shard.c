/* tests/model/test_shard.c — model shards in one process: pipeline stages start as the
 * slices of the full model, stages chained by hand over micro-batch slots compute the
 * full model's losses and gradients (bitwise, but for the tied embedding's two halves),
 * owned gradient norms add up, the scaled optimizer step equals the clipping one, and
 * bad shards are refused with a message. Tensor parallelism runs under MPI elsewhere. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parlm.h"
#include "../../lib/model/dp_hooks.h"
#include "../testutil.h"

static const parlm_gpt_config CFG = {.n_layer = 4, .n_head = 4, .n_embd = 32,
                                     .max_seq = 16, .vocab = 200}; /* L NH C maxT V (Vp 256) */

static parlm_gpt *make(const parlm_gpt_shard *sh, uint64_t seed)
{
    parlm_gpt *m;
    ck_assert_msg(parlm_gpt_create_shard(&m, &CFG, sh, seed) == PARLM_OK, "%s",
                  parlm_last_error());
    return m;
}

static void tokens(int32_t *t, int n, uint64_t seed)
{
    uint64_t s = seed * 2654435761u + 7;
    for (int i = 0; i < n; i++)
        t[i] = (int32_t)(tu_next(&s) % (uint64_t)CFG.vocab);
}

/* Copies every tensor of shard m (params, or grads) into its place in full (the full
 * model's layout); with add, adds instead (for the tied embedding held twice). */
static void to_full(parlm_gpt *m, int grads, float *full, int add)
{
    const float *src = grads ? parlm_gpt_grads(m) : parlm_gpt_params(m);
    for (int i = 0; i < parlm_gpt_num_tensors(m); i++) {
        parlm_gpt_slice sl;
        int64_t off, n;
        ck_assert_int_eq(parlm_gpt_tensor_slice(m, i, &sl), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_tensor_info(m, i, NULL, NULL, &off, &n), PARLM_OK);
        float *tmp = malloc((size_t)n * sizeof(float));
        float *dst = full + sl.full_offset;
        if (add) {
            parlm_gpt_slice_copy(&sl, tmp, dst, 0);
            for (int64_t k = 0; k < n; k++)
                tmp[k] += src[off + k];
        } else {
            memcpy(tmp, src + off, (size_t)n * sizeof(float));
        }
        parlm_gpt_slice_copy(&sl, tmp, dst, 1);
        free(tmp);
    }
}

START_TEST(stages_start_as_slices_of_the_full_model)
{
    parlm_gpt *full = make(NULL, 5);
    int64_t P = parlm_gpt_num_params(full);
    int cuts[][2] = {{0, 1}, {1, 3}, {3, 4}, {0, 4}};
    float *asm_ = malloc((size_t)P * sizeof(float));
    memset(asm_, 0xff, (size_t)P * sizeof(float)); /* NaN: a hole shows */
    int64_t total = 0;
    for (int s = 0; s < 3; s++) {
        parlm_gpt_shard sh = {1, 0, cuts[s][0], cuts[s][1]};
        parlm_gpt *m = make(&sh, 5);
        total += parlm_gpt_num_params(m);
        to_full(m, 0, asm_, 0);
        /* owners: the tied wte belongs to the first stage only */
        parlm_gpt_slice sl;
        ck_assert_int_eq(parlm_gpt_tensor_slice(m, 0, &sl), PARLM_OK);
        const char *name;
        parlm_gpt_tensor_info(m, 0, &name, NULL, NULL, NULL);
        if (!strcmp(name, "wte"))
            ck_assert_int_eq(sl.owner, s == 0);
        parlm_gpt_free(m);
    }
    ck_assert_msg(memcmp(asm_, parlm_gpt_params(full), (size_t)P * sizeof(float)) == 0,
                  "the stages' parameters are not the full model's");
    /* wte is held by the first and the last stage */
    ck_assert_int_eq(total, P + (int64_t)256 * 32);
    parlm_gpt_shard whole = {1, 0, 0, 4};
    parlm_gpt *w = make(&whole, 5);
    ck_assert_int_eq(memcmp(parlm_gpt_params(w), parlm_gpt_params(full),
                            (size_t)P * sizeof(float)), 0);
    parlm_gpt_free(w);
    free(asm_);
    parlm_gpt_free(full);
}
END_TEST

/* Two stages, M micro-batches in slots, GPipe order (all forwards, then all backwards in
 * reverse), against the full model accumulating the same micro-batches. */
/* parlm_gpt_shard_from cuts the same values out of a whole model as a shard created from
 * its seed, for tensor- and pipeline-parallel shards, and refuses a shard as the source */
START_TEST(shard_from_a_whole_model)
{
    parlm_gpt *full = make(NULL, 9);
    ck_assert_int_eq(parlm_gpt_set_step(full, 3), PARLM_OK);
    const parlm_gpt_shard shards[] = {{2, 1, 0, 4}, {4, 3, 0, 4}, {1, 0, 1, 3}, {2, 0, 2, 4}};
    for (size_t k = 0; k < sizeof shards / sizeof shards[0]; k++) {
        parlm_gpt *a, *b = make(&shards[k], 9);
        ck_assert_msg(parlm_gpt_shard_from(&a, full, &shards[k]) == PARLM_OK, "%s",
                      parlm_last_error());
        int64_t n = parlm_gpt_num_params(a);
        ck_assert_int_eq(n, parlm_gpt_num_params(b));
        ck_assert_msg(!memcmp(parlm_gpt_params(a), parlm_gpt_params(b), (size_t)n * 4),
                      "shard %zu differs from the seeded shard", k);
        ck_assert_int_eq(parlm_gpt_get_step(a), 3);
        if (k == 0) { /* a shard is no source */
            parlm_gpt *c = (parlm_gpt *)1;
            ck_assert_int_eq(parlm_gpt_shard_from(&c, a, &shards[0]), PARLM_EINVAL);
            ck_assert_ptr_null(c);
            ck_assert_ptr_nonnull(strstr(parlm_last_error(), "whole model"));
        }
        parlm_gpt_free(a);
        parlm_gpt_free(b);
    }
    parlm_gpt_free(full);
}
END_TEST

START_TEST(two_stages_compute_the_full_model)
{
    const int B = 2, T = 8, M = 3, N = B * T, C = CFG.n_embd;
    parlm_gpt *full = make(NULL, 9);
    parlm_gpt_shard s0 = {1, 0, 0, 2}, s1 = {1, 0, 2, 4};
    parlm_gpt *a = make(&s0, 9), *b = make(&s1, 9);
    ck_assert_int_eq(parlm_gpt_setup(full, B, T, 1), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_setup_slots(a, B, T, 1, M), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_setup_slots(b, B, T, 1, M), PARLM_OK);
    ck_assert_int_gt(parlm_gpt_activation_bytes(a), 0);
    int32_t in[M][16], tg[M][16];
    for (int k = 0; k < M; k++)
        tokens(in[k], N, 10 + k), tokens(tg[k], N, 20 + k);
    ck_assert_ptr_null(parlm_gpt_stage_input(a));
    ck_assert_ptr_null(parlm_gpt_stage_grad_output(b));
    float lf[M], lp[M];
    for (int k = 0; k < M; k++) {
        ck_assert_int_eq(parlm_gpt_forward(full, in[k], tg[k], &lf[k]), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_backward(full, 1.0f / M), PARLM_OK);
    }
    for (int k = 0; k < M; k++) {
        ck_assert_int_eq(parlm_gpt_set_slot(a, k), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_set_slot(b, k), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_forward(a, in[k], NULL, NULL), PARLM_OK);
        memcpy(parlm_gpt_stage_input(b), parlm_gpt_stage_output(a), (size_t)N * C * 4);
        ck_assert_int_eq(parlm_gpt_forward(b, NULL, tg[k], &lp[k]), PARLM_OK);
        ck_assert_msg(lp[k] == lf[k], "micro-batch %d: loss %.9g, full model %.9g", k, lp[k],
                      lf[k]);
    }
    for (int k = M - 1; k >= 0; k--) {
        ck_assert_int_eq(parlm_gpt_set_slot(a, k), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_set_slot(b, k), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_backward(b, 1.0f / M), PARLM_OK);
        memcpy(parlm_gpt_stage_grad_output(a), parlm_gpt_stage_grad_input(b), (size_t)N * C * 4);
        ck_assert_int_eq(parlm_gpt_backward(a, 1.0f / M), PARLM_OK);
    }
    int64_t P = parlm_gpt_num_params(full);
    float *g = calloc((size_t)P, sizeof(float));
    to_full(a, 1, g, 0);
    to_full(b, 1, g, 1); /* wte: head part (last stage) + lookup part (first stage) */
    const float *gf = parlm_gpt_grads(full);
    /* the same kernels on the same inputs, but the micro-batches accumulate in another
     * order (reverse), and wte's two halves are summed apart: within float rounding */
    double worst = 0;
    for (int64_t i = 0; i < P; i++) {
        double d = fabs((double)g[i] - gf[i]), tol = 1e-6 + 1e-5 * fabs(gf[i]);
        if (d > tol && d - tol > worst)
            worst = d - tol;
    }
    ck_assert_msg(worst == 0, "gradients differ from the full model's by %g beyond tolerance",
                  worst);
    free(g);
    parlm_gpt_free(a);
    parlm_gpt_free(b);
    parlm_gpt_free(full);
}
END_TEST

/* Micro-batches in the same order as the full model's accumulation: bitwise equal. */
START_TEST(stage_chain_is_bitwise_in_order)
{
    const int B = 1, T = 16, M = 2, N = B * T, C = CFG.n_embd;
    parlm_gpt *full = make(NULL, 3);
    parlm_gpt_shard s0 = {1, 0, 0, 3}, s1 = {1, 0, 3, 4};
    parlm_gpt *a = make(&s0, 3), *b = make(&s1, 3);
    ck_assert_int_eq(parlm_gpt_setup(full, B, T, 1), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_setup_slots(a, B, T, 1, M), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_setup_slots(b, B, T, 1, 1), PARLM_OK);
    int32_t in[M][16], tg[M][16];
    for (int k = 0; k < M; k++)
        tokens(in[k], N, 30 + k), tokens(tg[k], N, 40 + k);
    for (int k = 0; k < M; k++) {
        float lf, lp;
        ck_assert_int_eq(parlm_gpt_forward(full, in[k], tg[k], &lf), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_backward(full, 0.5f), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_set_slot(a, k), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_forward(a, in[k], NULL, NULL), PARLM_OK);
        memcpy(parlm_gpt_stage_input(b), parlm_gpt_stage_output(a), (size_t)N * C * 4);
        ck_assert_int_eq(parlm_gpt_forward(b, NULL, tg[k], &lp), PARLM_OK);
        ck_assert(lp == lf);
        ck_assert_int_eq(parlm_gpt_backward(b, 0.5f), PARLM_OK);
        memcpy(parlm_gpt_stage_grad_output(a), parlm_gpt_stage_grad_input(b), (size_t)N * C * 4);
        ck_assert_int_eq(parlm_gpt_backward(a, 0.5f), PARLM_OK);
    }
    int64_t P = parlm_gpt_num_params(full), wte = (int64_t)256 * C;
    float *g = calloc((size_t)P, sizeof(float));
    to_full(a, 1, g, 0);
    to_full(b, 1, g + 0, 0); /* b's wte (head part) overwrites; check wte separately */
    ck_assert_int_eq(memcmp(g + wte, parlm_gpt_grads(full) + wte, (size_t)(P - wte) * 4), 0);
    /* owned norms: a holds the whole wte once its head half is added to it */
    float *ga = parlm_gpt_grads(a), *gb = parlm_gpt_grads(b);
    for (int64_t i = 0; i < wte; i++)
        ga[i] += gb[i];
    double sf, sa, sb;
    ck_assert_int_eq(parlm_gpt_grad_sumsq(full, 1, &sf), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_grad_sumsq(a, 1, &sa), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_grad_sumsq(b, 1, &sb), PARLM_OK);
    ck_assert_msg(fabs(sa + sb - sf) <= 1e-5 * sf, "owned sums %.9g + %.9g vs %.9g", sa, sb, sf);
    free(g);
    parlm_gpt_free(a);
    parlm_gpt_free(b);
    parlm_gpt_free(full);
}
END_TEST

START_TEST(scaled_step_equals_clipping_step)
{
    const int B = 2, T = 8;
    parlm_gpt *x = make(NULL, 4), *y = make(NULL, 4);
    int32_t in[16], tg[16];
    tokens(in, 16, 1), tokens(tg, 16, 2);
    parlm_adamw_cfg opt = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f};
    for (int k = 0; k < 2; k++) {
        parlm_gpt *m = k ? y : x;
        float loss;
        ck_assert_int_eq(parlm_gpt_setup(m, B, T, 1), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_forward(m, in, tg, &loss), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_backward(m, 1.0f), PARLM_OK);
    }
    float norm;
    ck_assert_int_eq(parlm_gpt_optimizer_step(x, &opt, 0.01f, &norm), PARLM_OK);
    double ss;
    ck_assert_int_eq(parlm_gpt_grad_sumsq(y, 1, &ss), PARLM_OK);
    ck_assert_float_eq((float)sqrt(ss), norm);
    ck_assert_int_eq(parlm_gpt_optimizer_step_scale(y, &opt, 0.01f / norm), PARLM_OK);
    int64_t P = parlm_gpt_num_params(x);
    ck_assert_int_eq(memcmp(parlm_gpt_params(x), parlm_gpt_params(y), (size_t)P * 4), 0);
    ck_assert_int_eq(parlm_gpt_get_step(y), 1);
    ck_assert_int_eq(parlm_gpt_optimizer_step_scale(y, &opt, NAN), PARLM_EINVAL);
    parlm_gpt_free(x);
    parlm_gpt_free(y);
}
END_TEST

START_TEST(slots_and_stage_buffers)
{
    parlm_gpt_shard s0 = {1, 0, 0, 2}, s1 = {1, 0, 2, 4};
    parlm_gpt *a = make(&s0, 1), *b = make(&s1, 1);
    ck_assert_int_eq(parlm_gpt_setup_slots(a, 2, 8, 1, 1), PARLM_OK);
    int64_t one = parlm_gpt_activation_bytes(a);
    ck_assert_int_eq(parlm_gpt_setup_slots(a, 2, 8, 1, 4), PARLM_OK);
    int64_t four = parlm_gpt_activation_bytes(a);
    ck_assert_msg(four > 3 * one && four < 4 * one, "4 slots %lld bytes, 1 slot %lld",
                  (long long)four, (long long)one);
    ck_assert_int_eq(parlm_gpt_set_slot(a, 4), PARLM_EINVAL);
    ck_assert_int_eq(parlm_gpt_setup_slots(a, 2, 8, 1, 0), PARLM_EINVAL);
    ck_assert_int_eq(parlm_gpt_setup_slots(b, 2, 8, 1, 2), PARLM_OK);
    int32_t in[16], tg[16];
    tokens(in, 16, 1), tokens(tg, 16, 2);
    float loss;
    /* the first stage takes tokens, not targets; later stages the reverse */
    ck_assert_int_eq(parlm_gpt_forward(a, in, tg, &loss), PARLM_EINVAL);
    ck_assert_int_eq(parlm_gpt_forward(b, in, tg, &loss), PARLM_EINVAL);
    ck_assert_int_eq(parlm_gpt_forward(a, NULL, NULL, NULL), PARLM_EINVAL);
    ck_assert_ptr_null(parlm_gpt_stage_output(a)); /* no forward yet */
    ck_assert_ptr_nonnull(parlm_gpt_stage_input(b));
    ck_assert_ptr_null(parlm_gpt_stage_grad_input(b)); /* no backward yet */
    ck_assert_ptr_null(parlm_gpt_logits(a));
    ck_assert_int_eq(parlm_gpt_backward(a, 1.0f), PARLM_EINVAL); /* no forward */
    int32_t one_tok = 1;
    float logits[256];
    ck_assert_int_eq(parlm_gpt_infer(a, &one_tok, 1, 0, logits), PARLM_EUNSUPPORTED);
    ck_assert_int_eq(parlm_gpt_set_defer_token_grad(a, 1), PARLM_EUNSUPPORTED);
    /* whole-model files refuse a shard rather than write a short one */
    parlm_train_state st;
    memset(&st, 0, sizeof st);
    ck_assert_int_eq(parlm_gpt_save_llmc(a, "never-written.bin", 3), PARLM_EUNSUPPORTED);
    ck_assert_int_eq(parlm_checkpoint_save("never-written.bin", a, &st), PARLM_EUNSUPPORTED);
    ck_assert_int_eq(access("never-written.bin", F_OK), -1);
    parlm_gpt_free(a);
    parlm_gpt_free(b);
}
END_TEST

START_TEST(bad_shards_are_refused)
{
    parlm_gpt_shard bad[] = {
        {3, 0, 0, 4},  /* 3 does not divide 4 heads */
        {2, 2, 0, 4},  /* rank outside */
        {0, 0, 0, 4},
        {1, 0, 2, 2},  /* empty stage */
        {1, 0, 3, 5},  /* past the last layer */
        {1, 0, -1, 2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        parlm_gpt *m = (parlm_gpt *)1;
        ck_assert_int_eq(parlm_gpt_shard_check(&CFG, &bad[i]), PARLM_EINVAL);
        ck_assert_int_eq(parlm_gpt_create_shard(&m, &CFG, &bad[i], 1), PARLM_EINVAL);
        ck_assert_ptr_null(m);
        ck_assert(strlen(parlm_last_error()) > 10);
    }
    /* heads divide, the padded vocabulary does not */
    parlm_gpt_config c = CFG;
    c.n_head = 16, c.n_embd = 64, c.vocab_pad = 264; /* 264 % 16 = 8 */
    parlm_gpt_shard sh = {16, 0, 0, 4};
    ck_assert_int_eq(parlm_gpt_shard_check(&c, &sh), PARLM_EINVAL);
    ck_assert_msg(strstr(parlm_last_error(), "vocabulary") != NULL, "%s", parlm_last_error());
    ck_assert_int_eq(parlm_gpt_shard_check(&CFG, NULL), PARLM_EINVAL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("shard");
    TCase *tc = tcase_create("shard");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, stages_start_as_slices_of_the_full_model);
    tcase_add_test(tc, shard_from_a_whole_model);
    tcase_add_test(tc, two_stages_compute_the_full_model);
    tcase_add_test(tc, stage_chain_is_bitwise_in_order);
    tcase_add_test(tc, scaled_step_equals_clipping_step);
    tcase_add_test(tc, slots_and_stage_buffers);
    tcase_add_test(tc, bad_shards_are_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
