/* tests/test_dp.c — data-parallel training under mpirun (tests/dp_run.sh runs it with 2
 * and 4 ranks). Each rank also trains the single-process reference itself: 1 rank with
 * batch p*B over the same tokens. After k steps every mode must match it: N ranks x B
 * == 1 rank x N*B. The loader gives rank r the r-th B*T window of each p*B*T block, which
 * is exactly the reference's rows r*B .. r*B+B-1, so only the order of float sums differs.
 * Tolerances: losses agree to 2e-6 relative (a mean of ~ln V over p*B*T tokens computed
 * in two orders); parameters to 2e-5 absolute after 4 AdamW steps of lr 1e-3 with eps
 * 1e-6 (an update is m/(sqrt v + eps): a relative gradient difference of ~1e-6 moves it by
 * about lr * 1e-6 unless |g| is near eps, where it can move by up to lr * |dg| / eps). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parlm.h"
#include "parlm/dp.h"
#include "../testutil.h"

#define B 2
#define T 8
#define V 40
#define STEPS 4

static parlm_comm *comm;
static int rank, nranks;
static char shard[256];

static const parlm_adamw_cfg OPT = {1e-3f, 0.9f, 0.95f, 1e-6f, 0.1f};

static int llama; /* the models are Llama: 4 heads on 2 KV heads, SwiGLU, untied head */

static parlm_gpt *new_model(void)
{
    parlm_gpt_config cfg = {.n_layer = 2, .n_head = 2, .n_embd = 16, .max_seq = T, .vocab = V};
    if (llama)
        cfg = (parlm_gpt_config){.n_layer = 2, .n_head = 4, .n_embd = 16, .max_seq = T,
                                 .vocab = V, .arch = PARLM_ARCH_LLAMA, .n_kv_head = 2,
                                 .ffn_hidden = 24, .untied_head = 1};
    parlm_gpt *m;
    ck_assert_int_eq(parlm_gpt_create(&m, &cfg, 99), PARLM_OK);
    return m;
}

/* the single-process reference: batch nranks*B, plain AdamW; losses[step] */
static parlm_gpt *reference(float *losses)
{
    parlm_gpt *m = new_model();
    parlm_loader *l;
    int bb = B * nranks;
    ck_assert_int_eq(parlm_loader_open(&l, shard, bb, T, 0, 1, V), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_setup(m, bb, T, 1), PARLM_OK);
    int32_t *x = malloc((size_t)bb * T * 4), *y = malloc((size_t)bb * T * 4);
    for (int s = 0; s < STEPS; s++) {
        float norm;
        ck_assert_int_eq(parlm_loader_next(l, x, y), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_zero_grad(m), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_forward(m, x, y, &losses[s]), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_backward(m, 1.0f), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_grad_norm(m, &norm), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_update(m, &OPT, norm > 1 ? 1 / norm : 1), PARLM_OK);
    }
    free(x);
    free(y);
    parlm_loader_free(l);
    return m;
}

/* trains with mode across the ranks: each rank's batch of B rows per step, in accum
 * micro-batches of B/accum rows (communication only after the last one) */
static parlm_gpt *distributed_accum(parlm_dp_config cfg, float *losses, int accum)
{
    parlm_gpt *m = new_model();
    parlm_loader *l;
    int mb = B / accum;
    ck_assert_int_eq(parlm_loader_open(&l, shard, B, T, rank, nranks, V), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_setup(m, mb, T, 1), PARLM_OK);
    parlm_dp *dp;
    ck_assert_msg(parlm_dp_create(&dp, m, comm, &cfg) == PARLM_OK, "%s", parlm_last_error());
    int32_t x[B * T], y[B * T];
    for (int s = 0; s < STEPS; s++) {
        float loss, norm;
        double mean = 0;
        ck_assert_int_eq(parlm_loader_next(l, x, y), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_zero_grad(m), PARLM_OK);
        for (int a = 0; a < accum; a++) {
            ck_assert_int_eq(parlm_gpt_forward(m, x + a * mb * T, y + a * mb * T, &loss), PARLM_OK);
            ck_assert_msg(parlm_dp_backward(dp, 1.0f / (float)accum, a == accum - 1) == PARLM_OK,
                          "%s", parlm_last_error());
            mean += loss / accum;
        }
        ck_assert_msg(parlm_dp_update(dp, &OPT, 1.0f, &norm) == PARLM_OK, "%s", parlm_last_error());
        if (cfg.mode != PARLM_DP_LOCAL) /* only local SGD's replicas run apart */
            ck_assert_int_eq(parlm_dp_apart(dp), 0);
        ck_assert_int_eq(parlm_dp_mean(dp, &mean), PARLM_OK);
        losses[s] = (float)mean;
    }
    ck_assert_int_eq(parlm_dp_gather_state(dp), PARLM_OK);
    parlm_dp_free(dp);
    parlm_loader_free(l);
    return m;
}

static parlm_gpt *distributed(parlm_dp_config cfg, float *losses)
{
    return distributed_accum(cfg, losses, 1);
}

static float max_diff(parlm_gpt *a, parlm_gpt *b)
{
    return tu_max_abs_diff(parlm_gpt_params(a), parlm_gpt_params(b), parlm_gpt_num_params(a));
}

/* all ranks hold the same parameters: their checksum agrees */
static void replicas_agree(parlm_gpt *m)
{
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *p = (const unsigned char *)parlm_gpt_params(m);
    for (int64_t i = 0; i < parlm_gpt_num_params(m) * 4; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    ck_assert_msg(parlm_comm_check_agree(comm, "parameters", h) == PARLM_OK, "%s",
                  parlm_last_error());
}

static void check_accum(parlm_dp_mode mode, int64_t bucket_bytes, unsigned flags, int accum)
{
    float ref_loss[STEPS], dp_loss[STEPS];
    parlm_gpt *ref = reference(ref_loss);
    parlm_dp_config cfg = {mode, bucket_bytes, flags, 1, 0};
    parlm_gpt *m = distributed_accum(cfg, dp_loss, accum);
    for (int s = 0; s < STEPS; s++)
        ck_assert_msg(fabsf(dp_loss[s] - ref_loss[s]) <= 2e-6f * ref_loss[s],
                      "%s step %d: loss %.7f, reference %.7f", parlm_dp_mode_name(mode), s,
                      dp_loss[s], ref_loss[s]);
    float d = max_diff(m, ref);
    ck_assert_msg(d <= 2e-5f, "%s: parameters differ from the reference by %g",
                  parlm_dp_mode_name(mode), d);
    replicas_agree(m);
    parlm_gpt_free(m);
    parlm_gpt_free(ref);
}

static void check_against_reference(parlm_dp_mode mode, int64_t bucket_bytes, unsigned flags)
{
    check_accum(mode, bucket_bytes, flags, 1);
}

START_TEST(sync_equals_single_process)
{
    check_against_reference(PARLM_DP_SYNC, 0, PARLM_ALGO_AUTO);
}
END_TEST

START_TEST(overlap_equals_single_process)
{
    /* 8 KB buckets: the tiny model's gradients span ~10 of them; the token embedding
     * (deferred lookup rows) is one bucket of its own, or two of 4 KB on the shm path */
    check_against_reference(PARLM_DP_OVERLAP, 8192, PARLM_ALGO_RING);
    check_against_reference(PARLM_DP_OVERLAP, 4096, PARLM_ALGO_AUTO);
    /* two micro-batches: the first accumulates without communication or deferral */
    check_accum(PARLM_DP_OVERLAP, 4096, PARLM_ALGO_AUTO, 2);
}
END_TEST

START_TEST(zero1_equals_single_process)
{
    check_against_reference(PARLM_DP_ZERO1, 0, PARLM_ALGO_AUTO);
    check_accum(PARLM_DP_ZERO1, 0, PARLM_ALGO_AUTO, 2);
}
END_TEST

/* Data parallelism only averages gradients: a Llama model trains as GPT-2 does, in every
 * mode (the overlapped one reports its untied head and deferred token rows in ranges) */
START_TEST(llama_equals_single_process)
{
    llama = 1;
    check_against_reference(PARLM_DP_SYNC, 0, PARLM_ALGO_AUTO);
    check_against_reference(PARLM_DP_OVERLAP, 4096, PARLM_ALGO_AUTO);
    check_accum(PARLM_DP_ZERO1, 0, PARLM_ALGO_AUTO, 2);
    llama = 0;
}
END_TEST

/* local SGD with H = 1 is plain data parallelism, bitwise; with H = 3 the replicas
 * drift between syncs but agree after every third step, and over 4 steps of lr 1e-3 the
 * (rank-averaged) losses stay within 1% of the synchronous ones: AdamW's first steps move
 * every weight by about +-lr whatever its gradient's size, so a replica that sees 1/p of
 * the batch moves differently (measured: 0.1% at p = 4). */
START_TEST(local_sgd)
{
    float l1[STEPS], l2[STEPS];
    parlm_gpt *a = distributed((parlm_dp_config){PARLM_DP_SYNC, 0, PARLM_ALGO_AUTO, 1, 0}, l1);
    parlm_gpt *b = distributed((parlm_dp_config){PARLM_DP_LOCAL, 0, PARLM_ALGO_AUTO, 1, 0}, l2);
    ck_assert(memcmp(parlm_gpt_params(a), parlm_gpt_params(b),
                     (size_t)parlm_gpt_num_params(a) * 4) == 0);
    parlm_gpt_free(a);
    parlm_gpt_free(b);
    parlm_gpt *c = distributed((parlm_dp_config){PARLM_DP_LOCAL, 0, PARLM_ALGO_AUTO, 3, 0}, l2);
    for (int s = 0; s < STEPS; s++)
        ck_assert_msg(fabsf(l2[s] - l1[s]) <= 1e-2f * l1[s], "step %d: local %f, sync %f", s,
                      l2[s], l1[s]);
    parlm_gpt_free(c);
    /* after exactly 3 steps (a sync step) the replicas agree */
    parlm_gpt *m = new_model();
    parlm_loader *l;
    ck_assert_int_eq(parlm_loader_open(&l, shard, B, T, rank, nranks, V), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_setup(m, B, T, 1), PARLM_OK);
    parlm_dp *dp;
    parlm_dp_config cfg = {PARLM_DP_LOCAL, 0, PARLM_ALGO_AUTO, 3, 0};
    ck_assert_int_eq(parlm_dp_create(&dp, m, comm, &cfg), PARLM_OK);
    int32_t x[B * T], y[B * T];
    ck_assert_int_eq(parlm_dp_apart(dp), 0); /* before any step: together */
    for (int s = 0; s < 3; s++) {
        float loss;
        ck_assert_int_eq(parlm_loader_next(l, x, y), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_zero_grad(m), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_forward(m, x, y, &loss), PARLM_OK);
        ck_assert_int_eq(parlm_dp_backward(dp, 1.0f, 1), PARLM_OK);
        ck_assert_int_eq(parlm_dp_update(dp, &OPT, 1.0f, NULL), PARLM_OK);
        /* apart after steps 1 and 2 (nothing should make the ranks meet), not after 3 */
        ck_assert_int_eq(parlm_dp_apart(dp), nranks > 1 && s < 2);
    }
    replicas_agree(m);
    parlm_dp_free(dp);
    parlm_loader_free(l);
    parlm_gpt_free(m);
}
END_TEST

START_TEST(bad_input)
{
    parlm_dp *dp;
    parlm_gpt *m = new_model();
    parlm_dp_config cfg = {PARLM_DP_LOCAL, 0, PARLM_ALGO_AUTO, 0, 0};
    ck_assert_int_eq(parlm_dp_create(&dp, m, comm, &cfg), PARLM_EINVAL); /* H = 0 */
    ck_assert_int_eq(parlm_dp_create(&dp, NULL, comm, &cfg), PARLM_EINVAL);
    parlm_dp_mode mode;
    ck_assert_int_eq(parlm_dp_mode_parse("zero3", &mode), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "zero3"));
    ck_assert_int_eq(parlm_dp_mode_parse("zero1", &mode), PARLM_OK);
    ck_assert_int_eq(mode, PARLM_DP_ZERO1);
    parlm_gpt_free(m);
}
END_TEST

int main(int argc, char **argv)
{
    if (parlm_dist_init(&argc, &argv, NULL) != PARLM_OK || parlm_comm_world(&comm, NULL) != PARLM_OK) {
        fprintf(stderr, "test_dp: %s\n", parlm_last_error());
        return 1;
    }
    rank = parlm_comm_rank(comm);
    nranks = parlm_comm_size(comm);
    /* rank 0 writes the tokens; everyone reads the same file */
    if (rank == 0) {
        char dir[] = "/tmp/parlm-dp-XXXXXX";
        if (!mkdtemp(dir))
            return 1;
        snprintf(shard, sizeof shard, "%s/tokens.bin", dir);
        uint16_t toks[4096];
        uint64_t s = 17;
        for (int i = 0; i < 4096; i++)
            toks[i] = (uint16_t)(tu_next(&s) % V);
        if (parlm_shard_write(shard, toks, 4096) != PARLM_OK)
            return 1;
    }
    parlm_comm_bcast(comm, shard, sizeof shard, 0);
    Suite *s = suite_create("dp");
    TCase *tc = tcase_create("modes");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, sync_equals_single_process);
    tcase_add_test(tc, overlap_equals_single_process);
    tcase_add_test(tc, zero1_equals_single_process);
    tcase_add_test(tc, llama_equals_single_process);
    tcase_add_test(tc, local_sgd);
    tcase_add_test(tc, bad_input);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK); /* every rank must run every collective */
    srunner_run_all(sr, rank == 0 ? CK_NORMAL : CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    parlm_comm_barrier(comm);
    if (rank == 0) {
        unlink(shard);
        *strrchr(shard, '/') = '\0';
        rmdir(shard);
    }
    parlm_comm_free(comm);
    parlm_dist_finalize();
    return failed ? 1 : 0;
}
