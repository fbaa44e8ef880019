/* tests/parallel/test_pp.c — the process grid and pipeline parallelism under mpirun
 * (tests/parallel/pp_run.sh: 2 and 4 ranks). Grid: every group holds exactly the ranks the
 * formula rank = (d*pp + p)*tp + t says, in order; disagreeing or impossible layouts stop
 * every rank with a message. */
#include <check.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../mpi/comm.h"
#include "parlm.h"
#include "parlm/grid.h"
#include "../testutil.h"

static parlm_comm *world;
static int rank, nranks;

static parlm_gpt_config small_model(void)
{
    parlm_gpt_config c = {0};
    c.max_seq = 16;
    c.vocab = 100;
    ck_assert_int_eq(parlm_gpt_preset("small", &c), PARLM_OK);
    return c;
}

/* world ranks of the group, in the group's order (size entries) */
static int group_members(parlm_comm *c, int *out)
{
    MPI_Comm mc;
    ck_assert_int_eq(parlm_comm_get_mpi(c, &mc), PARLM_OK);
    ck_assert_int_eq(MPI_Allgather(&rank, 1, MPI_INT, out, 1, MPI_INT, mc), MPI_SUCCESS);
    return parlm_comm_size(c);
}

START_TEST(groups)
{
    parlm_gpt_config mc = small_model();
    const int layouts[][2] = {{1, 1}, {2, 1}, {1, 2}, {2, 2}, {4, 1}, {1, 4}};
    for (size_t li = 0; li < sizeof layouts / sizeof layouts[0]; li++) {
        int tp = layouts[li][0], pp = layouts[li][1];
        if (nranks % (tp * pp))
            continue;
        parlm_grid_config gc = {tp, pp, pp, PARLM_PP_1F1B, 0, 0};
        parlm_grid *g;
        ck_assert_msg(parlm_grid_create(&g, world, &mc, &gc) == PARLM_OK, "%s", parlm_last_error());
        int dp = nranks / (tp * pp), d, t, p;
        parlm_grid_coords(rank, tp, pp, &d, &t, &p);
        ck_assert_int_eq(parlm_grid_dp(g), dp);
        ck_assert_int_eq(parlm_grid_dp_rank(g), d);
        ck_assert_int_eq(parlm_grid_tp_rank(g), t);
        ck_assert_int_eq(parlm_grid_pp_rank(g), p);
        int got[8], n;
        n = group_members(parlm_grid_comm(g, PARLM_GRID_DP), got);
        ck_assert_int_eq(n, dp);
        for (int i = 0; i < dp; i++)
            ck_assert_int_eq(got[i], (i * pp + p) * tp + t);
        n = group_members(parlm_grid_comm(g, PARLM_GRID_TP), got);
        ck_assert_int_eq(n, tp);
        for (int i = 0; i < tp; i++)
            ck_assert_int_eq(got[i], (d * pp + p) * tp + i);
        n = group_members(parlm_grid_comm(g, PARLM_GRID_PP), got);
        ck_assert_int_eq(n, pp);
        for (int i = 0; i < pp; i++)
            ck_assert_int_eq(got[i], (d * pp + i) * tp + t);
        parlm_comm *e = parlm_grid_comm(g, PARLM_GRID_EMBED);
        if (p != 0 && p != pp - 1) {
            ck_assert_ptr_null(e);
        } else {
            n = group_members(e, got);
            ck_assert_int_eq(n, pp == 1 ? 1 : 2);
            ck_assert_int_eq(got[0], (d * pp + 0) * tp + t);
            ck_assert_int_eq(got[n - 1], (d * pp + pp - 1) * tp + t);
        }
        MPI_Comm p2p;
        ck_assert_int_eq(parlm_grid_pp_mpi(g, &p2p), PARLM_OK);
        int r, s;
        MPI_Comm_rank(p2p, &r);
        MPI_Comm_size(p2p, &s);
        ck_assert_int_eq(r, p);
        ck_assert_int_eq(s, pp);
        /* layers: the stages tile [0, L) and this rank's shard is its stage's */
        int end = 0;
        for (int st = 0; st < pp; st++) {
            int b, en;
            parlm_grid_stage_layers(g, st, &b, &en);
            ck_assert_int_eq(b, end);
            ck_assert_int_gt(en, b);
            end = en;
        }
        ck_assert_int_eq(end, mc.n_layer);
        parlm_gpt_shard sh = parlm_grid_shard(g);
        int b, en;
        parlm_grid_stage_layers(g, p, &b, &en);
        ck_assert_int_eq(sh.layer_begin, b);
        ck_assert_int_eq(sh.layer_end, en);
        ck_assert_int_eq(sh.tp, tp);
        ck_assert_int_eq(sh.tp_rank, t);
        /* the plan: one line per rank, the same on every rank */
        const char *plan = parlm_grid_plan(g);
        int lines = 0;
        for (const char *q = plan; *q; q++)
            lines += *q == '\n';
        ck_assert_int_eq(lines, nranks);
        char want[64];
        snprintf(want, sizeof want, "rank %d: dp %d tp %d pp %d | layers %d..%d", rank, d, t, p, b,
                 en - 1);
        ck_assert_msg(strstr(plan, want), "plan lacks '%s':\n%s", want, plan);
        ck_assert_ptr_nonnull(strstr(plan, "socket"));
        if (rank == 0 && li == 3)
            printf("plan of tp %d pp %d:\n%s", tp, pp, plan);
        parlm_grid_free(g);
    }
}
END_TEST

/* every rank must fail, with a message naming the problem */
static void all_fail(parlm_comm *c, const parlm_gpt_config *mc, const parlm_grid_config *gc,
                     const char *needle)
{
    parlm_grid *g = (parlm_grid *)1;
    parlm_status st = parlm_grid_create(&g, c, mc, gc);
    ck_assert_ptr_null(g);
    ck_assert_int_eq(st, PARLM_EINVAL);
    ck_assert_msg(strstr(parlm_last_error(), needle), "'%s' lacks '%s'", parlm_last_error(),
                  needle);
}

START_TEST(bad_layouts)
{
    parlm_gpt_config mc = small_model();
    /* ranks that disagree on M or the schedule */
    parlm_grid_config gc = {1, 2, rank == 1 ? 3 : 4, PARLM_PP_1F1B, 0, 0};
    all_fail(world, &mc, &gc, "micro-batches");
    gc.micro_batches = 4;
    gc.schedule = rank == nranks - 1 ? PARLM_PP_GPIPE : PARLM_PP_1F1B;
    all_fail(world, &mc, &gc, "schedule");
    /* impossible layouts */
    gc.schedule = PARLM_PP_1F1B;
    gc.tp = 3;
    all_fail(world, &mc, &gc, "ranks");
    gc.tp = 1, gc.pp = nranks, gc.micro_batches = 1;
    all_fail(world, &mc, &gc, "1F1B");
    /* a node per rank: a tensor-parallel group would span two */
    parlm_comm *fake;
    ck_assert_int_eq(dist_comm_create(&fake, MPI_COMM_WORLD, 1), PARLM_OK);
    parlm_grid_config tp2 = {2, 1, 1, PARLM_PP_GPIPE, 0, 0};
    all_fail(fake, &mc, &tp2, "spans nodes");
    tp2.allow_tp_across_nodes = 1;
    parlm_grid *g;
    ck_assert_int_eq(parlm_grid_create(&g, fake, &mc, &tp2), PARLM_OK);
    parlm_grid_free(g);
    parlm_comm_free(fake);
}
END_TEST

int main(int argc, char **argv)
{
    if (parlm_dist_init(&argc, &argv, NULL) != PARLM_OK || parlm_comm_world(&world) != PARLM_OK) {
        fprintf(stderr, "test_pp: %s\n", parlm_last_error());
        return 1;
    }
    rank = parlm_comm_rank(world);
    nranks = parlm_comm_size(world);
    Suite *s = suite_create("pp");
    TCase *tc = tcase_create("grid");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, groups);
    tcase_add_test(tc, bad_layouts);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK); /* every rank must run every collective */
    srunner_run_all(sr, rank == 0 ? CK_NORMAL : CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    parlm_comm_free(world);
    parlm_dist_finalize();
    return failed ? 1 : 0;
}
