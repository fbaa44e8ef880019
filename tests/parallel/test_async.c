/* tests/parallel/test_async.c — bounded-staleness data parallelism (--dp async) under
 * mpirun (tests/parallel/async_run.sh: 2 and 4 ranks, one node).
 * - S = 0 is synchronous data parallelism bit for bit (parameters and AdamW moments).
 * - Replay: with S = 2 and the last rank slowed, every rank records the version of the
 *   parameters each of its steps computed with; a single-process reference (every rank
 *   computes it) replays the stale-synchronous rules from those versions alone: update u
 *   = AdamW(theta_u, rank-ordered mean over r of grad(theta_{v(r,u)}, batch of rank r at
 *   step u)). The trained parameters must equal the replay's bit for bit, every version
 *   must be at most S behind, and the fast ranks must really have run S steps ahead.
 * - A rank that stops early releases the ranks waiting for it; the drain keeps what all
 *   pushed.
 * Both with the store in shared memory and as rank 0's window reached through RMA.
 * - The cost model of a straggler (parlm_plan_straggler) against schedules worked out by
 *   hand. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "parlm.h"
#include "parlm/dp.h"
#include "parlm/plan.h"
#include "../testutil.h"

#define B 2
#define T 8
#define V 40
#define STEPS 8

static parlm_comm *comm;
static int rank, nranks;
static char shard[256];

static const parlm_adamw_cfg OPT = {1e-3f, 0.9f, 0.95f, 1e-6f, 0.1f};
static const float CLIP = 1.0f;

static parlm_gpt *new_model(void)
{
    parlm_gpt_config cfg = {.n_layer = 2, .n_head = 2, .n_embd = 16, .max_seq = T, .vocab = V};
    parlm_gpt *m;
    ck_assert_int_eq(parlm_gpt_create(&m, &cfg, 99), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_setup(m, B, T, 1), PARLM_OK);
    return m;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* STEPS steps of cfg on this rank's batches; the slow rank sleeps slow_ms before each.
 * versions[s] = the version step s computed with (NULL: not recorded). */
static parlm_gpt *train(parlm_dp_config cfg, int slow_rank, int slow_ms, int64_t *versions)
{
    parlm_gpt *m = new_model();
    parlm_loader *l;
    ck_assert_int_eq(parlm_loader_open(&l, shard, B, T, rank, nranks, V), PARLM_OK);
    parlm_dp *dp;
    ck_assert_msg(parlm_dp_create(&dp, m, comm, &cfg) == PARLM_OK, "%s", parlm_last_error());
    int32_t x[B * T], y[B * T];
    int64_t version = 0;
    for (int s = 0; s < STEPS; s++) {
        float loss, norm;
        if (rank == slow_rank)
            sleep_ms(slow_ms);
        if (versions)
            versions[s] = version;
        ck_assert_int_eq(parlm_loader_next(l, x, y), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_zero_grad(m), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_forward(m, x, y, &loss), PARLM_OK);
        ck_assert_msg(parlm_dp_backward(dp, 1.0f, 1) == PARLM_OK, "%s", parlm_last_error());
        ck_assert_msg(parlm_dp_update(dp, &OPT, CLIP, &norm) == PARLM_OK, "%s",
                      parlm_last_error());
        version = parlm_dp_get_stats(dp).version;
    }
    ck_assert_msg(parlm_dp_gather_state(dp) == PARLM_OK, "%s", parlm_last_error());
    ck_assert_int_eq(parlm_gpt_get_step(m), STEPS);
    parlm_dp_free(dp);
    parlm_loader_free(l);
    return m;
}

static void same_bits(const float *a, const float *b, int64_t n, const char *what)
{
    int64_t i = 0;
    while (i < n && !memcmp(&a[i], &b[i], sizeof(float)))
        i++;
    ck_assert_msg(i == n, "%s differ first at %lld: %.9g vs %.9g", what, (long long)i,
                  i < n ? a[i] : 0.0, i < n ? b[i] : 0.0);
}

/* the store: shared memory (AUTO) or rank 0's window through RMA (MPI) */
static const unsigned STORES[] = {PARLM_ALGO_AUTO, PARLM_ALGO_MPI};

START_TEST(s0_equals_sync_bitwise)
{
    parlm_gpt *a = train((parlm_dp_config){PARLM_DP_SYNC, 0, PARLM_ALGO_AUTO, 1, 0}, -1, 0, NULL);
    /* a slowed rank changes nothing at S = 0: every step waits for it */
    parlm_gpt *b = train((parlm_dp_config){PARLM_DP_ASYNC, 0, STORES[_i], 1, 0},
                         nranks - 1, 2, NULL);
    int64_t P = parlm_gpt_num_params(a);
    same_bits(parlm_gpt_params(a), parlm_gpt_params(b), P, "parameters");
    same_bits(parlm_gpt_adam_m(a), parlm_gpt_adam_m(b), P, "first moments");
    same_bits(parlm_gpt_adam_v(a), parlm_gpt_adam_v(b), P, "second moments");
    parlm_gpt_free(a);
    parlm_gpt_free(b);
}
END_TEST

START_TEST(replay_stale_updates)
{
    enum { S = 2 };
    int64_t mine[STEPS];
    parlm_gpt *m = train((parlm_dp_config){PARLM_DP_ASYNC, 0, STORES[_i], 1, S},
                         nranks - 1, 20, mine);
    /* everyone's versions (small integers travel exactly as floats) */
    float *all = calloc((size_t)nranks * STEPS, sizeof *all);
    for (int s = 0; s < STEPS; s++)
        all[rank * STEPS + s] = (float)mine[s];
    ck_assert_int_eq(parlm_all_gather(comm, all, (int64_t)nranks * STEPS, PARLM_ALGO_AUTO),
                     PARLM_OK);
    int ahead = 0;
    for (int r = 0; r < nranks; r++)
        for (int s = 0; s < STEPS; s++) {
            int64_t v = (int64_t)all[r * STEPS + s];
            ck_assert_msg(v <= s && s - v <= S, "rank %d step %d computed with version %lld "
                          "(staleness bound %d)", r, s, (long long)v, S);
            ahead |= r < nranks - 1 && s - v == S;
        }
    /* the slow rank sleeps 20 ms a step, a fast one computes in about a millisecond */
    ck_assert_msg(ahead, "no fast rank ran %d steps ahead of the slowed one", S);

    /* the replay, one process: each rank's batches, then the updates in order */
    parlm_gpt *ref = new_model();
    int64_t P = parlm_gpt_num_params(ref);
    size_t bytes = (size_t)P * sizeof(float);
    int32_t *x = malloc((size_t)nranks * STEPS * B * T * sizeof *x);
    int32_t *y = malloc((size_t)nranks * STEPS * B * T * sizeof *y);
    for (int r = 0; r < nranks; r++) {
        parlm_loader *l;
        ck_assert_int_eq(parlm_loader_open(&l, shard, B, T, r, nranks, V), PARLM_OK);
        for (int s = 0; s < STEPS; s++)
            ck_assert_int_eq(parlm_loader_next(l, x + ((size_t)r * STEPS + s) * B * T,
                                               y + ((size_t)r * STEPS + s) * B * T), PARLM_OK);
        parlm_loader_free(l);
    }
    float *theta = malloc(bytes * (STEPS + 1)), *g = malloc(bytes * (size_t)nranks);
    float *mean = malloc(bytes);
    memcpy(theta, parlm_gpt_params(ref), bytes);
    ck_assert_int_eq(parlm_gpt_init_optimizer(ref), PARLM_OK);
    float *m1 = malloc(bytes), *m2 = malloc(bytes);
    memset(m1, 0, bytes);
    memset(m2, 0, bytes);
    for (int u = 0; u < STEPS; u++) {
        for (int r = 0; r < nranks; r++) {
            float loss;
            int64_t v = (int64_t)all[r * STEPS + u];
            memcpy(parlm_gpt_params(ref), theta + (size_t)v * P, bytes);
            ck_assert_int_eq(parlm_gpt_zero_grad(ref), PARLM_OK);
            ck_assert_int_eq(parlm_gpt_forward(ref, x + ((size_t)r * STEPS + u) * B * T,
                                               y + ((size_t)r * STEPS + u) * B * T, &loss),
                             PARLM_OK);
            ck_assert_int_eq(parlm_gpt_backward(ref, 1.0f), PARLM_OK);
            memcpy(g + (size_t)r * P, parlm_gpt_grads(ref), bytes);
        }
        /* (g_0 + g_1) + g_2 + ... then x 1/p, as the shared-memory all-reduce sums */
        for (int64_t i = 0; i < P; i++) {
            float acc = g[i];
            for (int r = 1; r < nranks; r++)
                acc += g[(size_t)r * P + i];
            mean[i] = nranks > 1 ? acc * (1.0f / (float)nranks) : acc;
        }
        float norm;
        memcpy(parlm_gpt_params(ref), theta + (size_t)u * P, bytes);
        memcpy(parlm_gpt_grads(ref), mean, bytes);
        memcpy(parlm_gpt_adam_m(ref), m1, bytes);
        memcpy(parlm_gpt_adam_v(ref), m2, bytes);
        ck_assert_int_eq(parlm_gpt_set_step(ref, u), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_optimizer_step(ref, &OPT, CLIP, &norm), PARLM_OK);
        memcpy(theta + (size_t)(u + 1) * P, parlm_gpt_params(ref), bytes);
        memcpy(m1, parlm_gpt_adam_m(ref), bytes);
        memcpy(m2, parlm_gpt_adam_v(ref), bytes);
    }
    same_bits(parlm_gpt_params(m), theta + (size_t)STEPS * P, P, "replayed parameters");
    same_bits(parlm_gpt_adam_m(m), m1, P, "replayed first moments");
    same_bits(parlm_gpt_adam_v(m), m2, P, "replayed second moments");
    free(all), free(x), free(y), free(theta), free(g), free(mean), free(m1), free(m2);
    parlm_gpt_free(ref);
    parlm_gpt_free(m);
}
END_TEST

/* Rank 0 stops after 2 steps (as on a signal, which every rank sees at its own step);
 * the others, up to S = 1 step ahead, must get PARLM_ECANCELED instead of waiting forever
 * for its pushes, and the drain then leaves every rank with the 2 updates all pushed. */
START_TEST(stop_releases_waiters)
{
    parlm_gpt *m = new_model();
    parlm_loader *l;
    ck_assert_int_eq(parlm_loader_open(&l, shard, B, T, rank, nranks, V), PARLM_OK);
    parlm_dp *dp;
    parlm_dp_config cfg = {PARLM_DP_ASYNC, 0, STORES[_i], 1, 1};
    ck_assert_msg(parlm_dp_create(&dp, m, comm, &cfg) == PARLM_OK, "%s", parlm_last_error());
    int32_t x[B * T], y[B * T];
    int steps = rank == 0 ? 2 : STEPS;
    parlm_status st = PARLM_OK;
    int s = 0;
    for (; s < steps && st == PARLM_OK; s++) {
        float loss, norm;
        ck_assert_int_eq(parlm_loader_next(l, x, y), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_zero_grad(m), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_forward(m, x, y, &loss), PARLM_OK);
        ck_assert_int_eq(parlm_dp_backward(dp, 1.0f, 1), PARLM_OK);
        st = parlm_dp_update(dp, &OPT, CLIP, &norm);
    }
    if (rank == 0) {
        ck_assert_msg(st == PARLM_OK, "%s", parlm_last_error());
        ck_assert_int_eq(parlm_dp_stop(dp), PARLM_OK);
    } else {
        ck_assert_msg(st == PARLM_ECANCELED, "rank %d: %d steps, status %d", rank, s, st);
        ck_assert_msg(s <= 2 + 1 + 1, "rank %d ran %d steps past a stop at 2 with S = 1", rank,
                      s);
    }
    ck_assert_msg(parlm_dp_gather_state(dp) == PARLM_OK, "%s", parlm_last_error());
    ck_assert_int_eq(parlm_gpt_get_step(m), 2);
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *p = (const unsigned char *)parlm_gpt_params(m);
    for (int64_t i = 0; i < parlm_gpt_num_params(m) * 4; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    ck_assert_msg(parlm_comm_check_agree(comm, "parameters", h) == PARLM_OK, "%s",
                  parlm_last_error());
    parlm_dp_free(dp);
    parlm_loader_free(l);
    parlm_gpt_free(m);
}
END_TEST

START_TEST(bad_input)
{
    parlm_dp *dp;
    parlm_gpt *m = new_model();
    parlm_dp_config cfg = {PARLM_DP_ASYNC, 0, PARLM_ALGO_AUTO, 1, -1};
    ck_assert_int_eq(parlm_dp_create(&dp, m, comm, &cfg), PARLM_EINVAL); /* S < 0 */
    parlm_dp_mode mode;
    ck_assert_int_eq(parlm_dp_mode_parse("async", &mode), PARLM_OK);
    ck_assert_int_eq(mode, PARLM_DP_ASYNC);
    cfg.staleness = 1;
    ck_assert_msg(parlm_dp_create(&dp, m, comm, &cfg) == PARLM_OK, "%s", parlm_last_error());
    /* the two-call form of the step is for the synchronous modes */
    ck_assert_int_eq(parlm_dp_exchange(dp), PARLM_EUNSUPPORTED);
    ck_assert_int_eq(parlm_dp_apply(dp, &OPT, 1.0f), PARLM_EUNSUPPORTED);
    parlm_dp_free(dp);
    parlm_gpt_free(m);
}
END_TEST

/* 2 ranks, steps of 1 s, the straggler's 1 s more. Rotating (rank c mod 2 at step c):
 * sync waits for it every step (2 s); local SGD with H = 2 and async with S = 1 let each
 * rank do its fast and slow steps back to back and meet every second step (3 s per 2
 * steps). A fixed straggler sets everyone's pace whatever S: async S = 4 gains only the
 * S steps the fast rank may run ahead, which end waiting anyway (2 s a step). */
static void near(double got, double want)
{
    ck_assert_msg(fabs(got - want) <= 1e-12, "step %.15g s, by hand %.15g s", got, want);
}

START_TEST(straggler_model)
{
    double s;
    ck_assert_int_eq(parlm_plan_straggler("sync", 2, 0, 1, 1, -2, 0, 4, &s), PARLM_OK);
    near(s, 2.0);
    ck_assert_int_eq(parlm_plan_straggler("sync", 2, 0, 1, 1, -2, 0.5, 4, &s), PARLM_OK);
    near(s, 2.5);
    ck_assert_int_eq(parlm_plan_straggler("async", 2, 0, 1, 1, -2, 0, 4, &s), PARLM_OK);
    near(s, 2.0); /* S = 0 is sync */
    ck_assert_int_eq(parlm_plan_straggler("local", 2, 2, 1, 1, -2, 0, 4, &s), PARLM_OK);
    near(s, 1.5);
    ck_assert_int_eq(parlm_plan_straggler("async", 2, 1, 1, 1, -2, 0, 4, &s), PARLM_OK);
    near(s, 1.5);
    ck_assert_int_eq(parlm_plan_straggler("async", 2, 4, 1, 1, 1, 0, 100, &s), PARLM_OK);
    near(s, 2.0);
    ck_assert_int_eq(parlm_plan_straggler("sync", 2, 0, 1, 0, -1, 0, 10, &s), PARLM_OK);
    near(s, 1.0); /* no straggler */
    ck_assert_int_eq(parlm_plan_straggler("zero3", 2, 0, 1, 1, -1, 0, 4, &s), PARLM_EINVAL);
    ck_assert_int_eq(parlm_plan_straggler("local", 2, 0, 1, 1, -1, 0, 4, &s), PARLM_EINVAL);
    ck_assert_int_eq(parlm_plan_straggler("sync", 2, 0, -1, 1, -1, 0, 4, &s), PARLM_EINVAL);
}
END_TEST

int main(int argc, char **argv)
{
    if (parlm_dist_init(&argc, &argv, NULL) != PARLM_OK || parlm_comm_world(&comm, NULL) != PARLM_OK) {
        fprintf(stderr, "test_async: %s\n", parlm_last_error());
        return 1;
    }
    rank = parlm_comm_rank(comm);
    nranks = parlm_comm_size(comm);
    if (rank == 0) { /* rank 0 writes the tokens; everyone reads the same file */
        char dir[] = "/tmp/parlm-async-XXXXXX";
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
    Suite *s = suite_create("async");
    TCase *tc = tcase_create("async");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, s0_equals_sync_bitwise, 0, 2);
    tcase_add_loop_test(tc, replay_stale_updates, 0, 2);
    tcase_add_loop_test(tc, stop_releases_waiters, 0, 2);
    tcase_add_test(tc, bad_input);
    tcase_add_test(tc, straggler_model);
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
