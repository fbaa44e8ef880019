/* tests/model/model_check.h — what the whole-model tests (test_model: GPT-2, test_llama:
 * Llama) share: random tokens, and the finite-difference check of every parameter. */
#ifndef PARLM_TESTS_MODEL_CHECK_H
#define PARLM_TESTS_MODEL_CHECK_H
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parlm.h"
#include "../testutil.h"

static void random_tokens(int32_t *t, int n, int V, uint64_t seed)
{
    uint64_t s = seed * 2654435761u + 7;
    for (int i = 0; i < n; i++)
        t[i] = (int32_t)(tu_next(&s) % (uint64_t)V);
}

/* Central differences on every parameter of m (set up for B x T, weights as the caller
 * drew them) against backward's gradients at the tokens in -> tg: h = 1e-2, |fd - an| <=
 * 2e-3 + 3e-2 |an| per parameter and a relative RMS error < 1e-2. The first 10 misses are
 * printed with their tensor and layer, tagged `tag`. Returns backward's gradients (malloc'd:
 * free them) for the caller's own checks (padded vocabulary rows). */
static float *fd_check_model(parlm_gpt *m, const int32_t *in, const int32_t *tg, const char *tag)
{
    int64_t P = parlm_gpt_num_params(m);
    float *p = parlm_gpt_params(m), loss;
    ck_assert_int_eq(parlm_gpt_forward(m, in, tg, &loss), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_zero_grad(m), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_backward(m, 1.0f), PARLM_OK);
    float *g = malloc((size_t)P * sizeof(float));
    ck_assert_ptr_nonnull(g);
    memcpy(g, parlm_gpt_grads(m), (size_t)P * sizeof(float));
    int bad = 0, nt = parlm_gpt_num_tensors(m);
    double num = 0, den = 0;
    for (int64_t i = 0; i < P; i++) {
        float save = p[i], lp, lm;
        const float h = 1e-2f;
        p[i] = save + h;
        parlm_gpt_params(m); /* marks the weights as changed */
        ck_assert_int_eq(parlm_gpt_forward(m, in, tg, &lp), PARLM_OK);
        p[i] = save - h;
        ck_assert_int_eq(parlm_gpt_forward(m, in, tg, &lm), PARLM_OK);
        p[i] = save;
        double fd = ((double)lp - lm) / (2.0 * h);
        num += (fd - g[i]) * (fd - g[i]);
        den += (double)g[i] * g[i];
        if (fabs(fd - g[i]) > 2e-3 + 3e-2 * fabs(g[i]) && bad++ < 10) {
            const char *name = "?";
            int layer = 0;
            for (int t = 0; t < nt; t++) {
                int64_t off, cnt;
                const char *nm;
                int l;
                parlm_gpt_tensor_info(m, t, &nm, &l, &off, &cnt);
                if (i >= off && i < off + cnt)
                    name = nm, layer = l;
            }
            fprintf(stderr, "[%s] param %lld (%s, layer %d): fd %.6f analytic %.6f\n", tag,
                    (long long)i, name, layer, fd, g[i]);
        }
    }
    ck_assert_msg(bad == 0, "%s: %d of %lld gradients off", tag, bad, (long long)P);
    ck_assert_msg(sqrt(num / den) < 1e-2, "%s: relative gradient error %g", tag,
                  sqrt(num / den));
    return g;
}
/* The KV cache against the full forward: m's weights times 5 (sharper attention than at
 * init), the logits of a 5-token prefill and then of each single-token decode step up to
 * T equal the forward's of the whole sequence within 1e-4. */
static void kv_check_model(parlm_gpt *m, int T, const char *tag)
{
    parlm_gpt_config c = parlm_gpt_get_config(m);
    int V = c.vocab, Vp = c.vocab_pad;
    float *p = parlm_gpt_params(m);
    for (int64_t i = 0; i < parlm_gpt_num_params(m); i++)
        p[i] *= 5.0f;
    int32_t *in = malloc((size_t)T * sizeof *in);
    float *lg = malloc((size_t)Vp * sizeof(float));
    ck_assert(in && lg && T > 5);
    random_tokens(in, T, V, 12);
    ck_assert_int_eq(parlm_gpt_setup(m, 1, T, 0), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_forward(m, in, NULL, NULL), PARLM_OK);
    const float *full = parlm_gpt_logits(m);
    ck_assert_int_eq(parlm_gpt_infer(m, in, 5, 0, lg), PARLM_OK);
    ck_assert_float_le(tu_max_abs_diff(lg, full + 4 * Vp, V), 1e-4f);
    for (int t = 5; t < T; t++) {
        ck_assert_int_eq(parlm_gpt_infer(m, in + t, 1, t, lg), PARLM_OK);
        ck_assert_msg(tu_max_abs_diff(lg, full + (int64_t)t * Vp, V) <= 1e-4f,
                      "%s position %d: %g", tag, t, tu_max_abs_diff(lg, full + (int64_t)t * Vp, V));
    }
    free(in);
    free(lg);
}
/* After an optimizer step the gradients are zero but not cleared (the buffer still holds
 * the last step's): the next backward writes the weight matrices' gradients and clears
 * the rest. a and b are two models made alike, set up for B x T with V tokens. a takes a
 * step on one batch, b gets a's new weights, and both run backward on a second batch:
 * a's gradients (written over stale ones) must equal b's (added to the zeros of a new
 * model) element by element (a written 0 may be -0 where an added one is +0). A tensor
 * backward adds into but did not clear, or a product that added to stale values, shows
 * the first step's gradients. */
static void stale_check_model(parlm_gpt *a, parlm_gpt *b, int B, int T, int V, const char *tag)
{
    int64_t P = parlm_gpt_num_params(a);
    int n = B * T;
    int32_t *in = malloc((size_t)n * sizeof *in), *tg = malloc((size_t)n * sizeof *tg);
    ck_assert(in && tg);
    random_tokens(in, n, V, 61);
    random_tokens(tg, n, V, 62);
    parlm_adamw_cfg opt = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f};
    float la, lb, norm;
    ck_assert_int_eq(parlm_gpt_forward(a, in, tg, &la), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_backward(a, 1.0f), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_optimizer_step(a, &opt, 0.0f, &norm), PARLM_OK);
    memcpy(parlm_gpt_params(b), parlm_gpt_params(a), (size_t)P * sizeof(float));
    random_tokens(in, n, V, 63);
    random_tokens(tg, n, V, 64);
    ck_assert_int_eq(parlm_gpt_forward(a, in, tg, &la), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_backward(a, 1.0f), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_forward(b, in, tg, &lb), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_backward(b, 1.0f), PARLM_OK);
    ck_assert(la == lb);
    const float *ga = parlm_gpt_grads(a), *gb = parlm_gpt_grads(b);
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < P; i++)
        if (!(ga[i] == gb[i]) && bad++ == 0)
            first = i;
    ck_assert_msg(bad == 0, "%s: %lld of %lld gradients differ after a step, first %lld: %g vs %g",
                  tag, (long long)bad, (long long)P, (long long)first,
                  first >= 0 ? ga[first] : 0.0, first >= 0 ? gb[first] : 0.0);
    free(in);
    free(tg);
}
#endif
