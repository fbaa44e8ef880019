/* tests/io/ckpt_fixture.h — models for the sharded-checkpoint tests (one process and MPI):
 * a whole model with AdamW state after a few steps, and any layout's shard cut from it
 * slice by slice (so what a load must give is known without the code under test). */
#ifndef PARLM_TESTS_CKPT_FIXTURE_H
#define PARLM_TESTS_CKPT_FIXTURE_H
#include <check.h>

#include "parlm.h"
#include "../testutil.h"

/* A whole model after `steps` AdamW steps on random tokens (so m and v are not zero;
 * steps = 0 leaves it without AdamW state). */
static inline parlm_gpt *fx_trained(const parlm_gpt_config *cfg, int steps)
{
    parlm_gpt *m;
    ck_assert_int_eq(parlm_gpt_create(&m, cfg, 5), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_setup(m, 2, 8, 1), PARLM_OK);
    uint64_t s = 11;
    int32_t x[16], y[16];
    for (int k = 0; k < steps; k++) {
        for (int i = 0; i < 16; i++)
            x[i] = (int32_t)(tu_next(&s) % (uint64_t)cfg->vocab),
            y[i] = (int32_t)(tu_next(&s) % (uint64_t)cfg->vocab);
        float loss, norm;
        parlm_adamw_cfg opt = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f};
        ck_assert_int_eq(parlm_gpt_zero_grad(m), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_forward(m, x, y, &loss), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_backward(m, 1.0f), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_optimizer_step(m, &opt, 1.0f, &norm), PARLM_OK);
    }
    return m;
}

/* b = 0 parameters, 1 AdamW m, 2 AdamW v */
static inline float *fx_buf(parlm_gpt *m, int b)
{
    return b == 0 ? parlm_gpt_params(m) : b == 1 ? parlm_gpt_adam_m(m) : parlm_gpt_adam_v(m);
}

/* The shard of `full` with this layout: created with other values, then each tensor's
 * slice copied from the whole model (parameters and, if any, AdamW m and v). */
static inline parlm_gpt *fx_cut(const parlm_gpt_config *cfg, parlm_gpt *full, parlm_gpt_shard sh)
{
    parlm_gpt *m;
    ck_assert_int_eq(parlm_gpt_create_shard(&m, cfg, &sh, 99), PARLM_OK);
    int nb = parlm_gpt_adam_m(full) ? 3 : 1;
    if (nb == 3)
        ck_assert_int_eq(parlm_gpt_init_optimizer(m), PARLM_OK);
    for (int j = 0; j < parlm_gpt_num_tensors(m); j++) {
        parlm_gpt_slice s;
        int64_t off;
        ck_assert_int_eq(parlm_gpt_tensor_slice(m, j, &s), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_tensor_info(m, j, NULL, NULL, &off, NULL), PARLM_OK);
        for (int b = 0; b < nb; b++)
            parlm_gpt_slice_copy(&s, fx_buf(m, b) + off, fx_buf(full, b) + s.full_offset, 0);
    }
    ck_assert_int_eq(parlm_gpt_set_step(m, parlm_gpt_get_step(full)), PARLM_OK);
    return m;
}
#endif
