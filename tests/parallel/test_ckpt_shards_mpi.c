/* tests/parallel/test_ckpt_shards_mpi.c — sharded checkpoints across ranks (run by
 * ckpt_shards_run.sh under mpirun -np 2 and 4): each rank holds one pipeline stage of the
 * same model; saving over the communicator writes on rank 0 byte for byte the file of the
 * whole model, and each rank loads its own stage back from it; the same with tensor-parallel
 * slices (tp = 2, and tp = 2 x pp = 2), whose file one process loads as the whole model. A rank with a bad shard, a
 * layout that leaves layers out, or a rank 0 that cannot write: every rank gets the error
 * (none waits forever). Every rank trains the same whole model itself (same inputs, one
 * thread: the same bits), so rank 0 has the reference file. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parlm.h"
#include "../testutil.h"
#include "../io/ckpt_fixture.h"

static parlm_comm *comm;
static int rank, size;
static char dir[64];
static const parlm_gpt_config CFG = {.n_layer = 4, .n_head = 2, .n_embd = 32,
                                     .max_seq = 16, .vocab = 200}; /* L4: up to 4 stages */

/* layers [begin, end) of `full` as a stage shard, values copied slice by slice */
static parlm_gpt *stage_of(parlm_gpt *full, int begin, int end)
{
    return fx_cut(&CFG, full, (parlm_gpt_shard){1, 0, begin, end});
}

/* this rank's stage of `size` */
static parlm_gpt *my_stage(parlm_gpt *full)
{
    return stage_of(full, rank * CFG.n_layer / size, (rank + 1) * CFG.n_layer / size);
}

static void same_files(const char *a, const char *b)
{
    FILE *f = fopen(a, "rb"), *g = fopen(b, "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(g);
    int c, d;
    long at = 0;
    do {
        c = fgetc(f), d = fgetc(g);
        ck_assert_msg(c == d, "%s and %s differ at byte %ld", a, b, at);
        at++;
    } while (c != EOF);
    fclose(f);
    fclose(g);
}

START_TEST(stages_across_ranks)
{
    parlm_gpt *full = fx_trained(&CFG, 2);
    parlm_gpt *mine = my_stage(full);
    parlm_train_state st = {.step = 2, .rng = 77, .train = {0, 512}, .B = 2, .T = 8,
                            .grad_accum = 1, .world = 1, .seed = 5, .tokens = 32};
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/whole.bin", dir);
    snprintf(b, sizeof b, "%s/sharded.bin", dir);
    parlm_status s = parlm_checkpoint_save_shards(b, &mine, 1, comm, &st);
    ck_assert_msg(s == PARLM_OK, "rank %d: %s", rank, parlm_last_error());
    if (rank == 0) {
        ck_assert_int_eq(parlm_checkpoint_save(a, full, &st), PARLM_OK);
        same_files(a, b);
    }
    ck_assert_int_eq(parlm_comm_barrier(comm), PARLM_OK);
    /* each rank reads its own stage back */
    parlm_gpt_shard lay = parlm_gpt_get_shard(mine);
    parlm_gpt *back;
    parlm_train_state got;
    ck_assert_int_eq(parlm_gpt_load_shards(b, &lay, 1, &back, &got), PARLM_OK);
    ck_assert_mem_eq(&got, &st, sizeof st);
    int64_t n = parlm_gpt_num_params(mine);
    for (int k = 0; k < 3; k++)
        ck_assert_mem_eq(fx_buf(back, k), fx_buf(mine, k), (size_t)n * 4);
    parlm_gpt_free(back);

    /* through the checkpoint directory: rank 0 holds the handle */
    char d[128], p[4096] = "";
    snprintf(d, sizeof d, "%s/run", dir);
    parlm_ckpt_dir *h = NULL;
    if (rank == 0)
        ck_assert_int_eq(parlm_ckpt_dir_open(&h, d), PARLM_OK);
    s = parlm_ckpt_dir_save_shards(h, &mine, 1, comm, &st, 2, p, sizeof p);
    ck_assert_msg(s == PARLM_OK, "rank %d: %s", rank, parlm_last_error());
    if (rank == 0) {
        ck_assert_ptr_nonnull(strstr(p, "run/ckpt_00000002.bin"));
        same_files(a, p);
    }
    parlm_ckpt_dir_close(h);
    parlm_gpt_free(mine);
    parlm_gpt_free(full);
}
END_TEST

/* Two replicas of a two-stage pipeline (with 4 ranks; with 2, one replica of two stages):
 * the first replica's ranks hold the stages, the others pass no shard. */
START_TEST(one_replica_saves)
{
    parlm_gpt *full = fx_trained(&CFG, 2);
    int stages = size < 4 ? size : 2, replica = rank / stages, stage = rank % stages;
    parlm_gpt *mine = stage_of(full, stage * CFG.n_layer / stages,
                               (stage + 1) * CFG.n_layer / stages);
    parlm_train_state st = {.step = 2, .seed = 3};
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/whole2.bin", dir);
    snprintf(b, sizeof b, "%s/replica.bin", dir);
    parlm_status s = parlm_checkpoint_save_shards(b, &mine, replica == 0 ? 1 : 0, comm, &st);
    ck_assert_msg(s == PARLM_OK, "rank %d: %s", rank, parlm_last_error());
    if (rank == 0) {
        ck_assert_int_eq(parlm_checkpoint_save(a, full, &st), PARLM_OK);
        same_files(a, b);
    }
    /* every replica saving: values owned twice (with 4 ranks) */
    if (size == 4) {
        s = parlm_checkpoint_save_shards(b, &mine, 1, comm, &st);
        ck_assert_int_eq(s, PARLM_EINVAL);
    }
    /* rank 0 without a shard cannot write */
    s = parlm_checkpoint_save_shards(b, &mine, rank == 0 ? 0 : 1, comm, &st);
    ck_assert_int_eq(s, PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "holds no shard"));
    ck_assert_int_eq(parlm_comm_barrier(comm), PARLM_OK);
    parlm_gpt_free(mine);
    parlm_gpt_free(full);
}
END_TEST

/* Tensor parallelism across ranks: tp = 2 (2 ranks) or tp = 2 x pp = 2 (4 ranks) writes the
 * whole file, which one process loads as the whole model, and each rank loads its slice. */
START_TEST(tensor_parallel_ranks)
{
    int tp = 2, t = rank % tp, stages = size / tp, p = rank / tp;
    parlm_gpt_shard lay = {tp, t, p * CFG.n_layer / stages, (p + 1) * CFG.n_layer / stages};
    parlm_gpt *full = fx_trained(&CFG, 2);
    parlm_gpt_shard cutlay = lay;
    parlm_gpt *mine;
    ck_assert_int_eq(parlm_gpt_create_shard(&mine, &CFG, &cutlay, 99), PARLM_OK);
    ck_assert_int_eq(parlm_gpt_init_optimizer(mine), PARLM_OK);
    for (int j = 0; j < parlm_gpt_num_tensors(mine); j++) {
        parlm_gpt_slice sl;
        int64_t off;
        ck_assert_int_eq(parlm_gpt_tensor_slice(mine, j, &sl), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_tensor_info(mine, j, NULL, NULL, &off, NULL), PARLM_OK);
        for (int b = 0; b < 3; b++)
            parlm_gpt_slice_copy(&sl, fx_buf(mine, b) + off, fx_buf(full, b) + sl.full_offset, 0);
    }
    ck_assert_int_eq(parlm_gpt_set_step(mine, 2), PARLM_OK);
    parlm_train_state st = {.step = 2, .rng = 9, .seed = 4};
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/whole_tp.bin", dir);
    snprintf(b, sizeof b, "%s/tp.bin", dir);
    parlm_status s = parlm_checkpoint_save_shards(b, &mine, 1, comm, &st);
    ck_assert_msg(s == PARLM_OK, "rank %d: %s", rank, parlm_last_error());
    if (rank == 0) {
        ck_assert_int_eq(parlm_checkpoint_save(a, full, &st), PARLM_OK);
        same_files(a, b);
        parlm_gpt *whole; /* one process resumes what tp = 2 wrote */
        parlm_train_state got;
        ck_assert_int_eq(parlm_checkpoint_load(b, &whole, &got), PARLM_OK);
        int64_t n = parlm_gpt_num_params(full);
        for (int k = 0; k < 3; k++)
            ck_assert_mem_eq(fx_buf(whole, k), fx_buf(full, k), (size_t)n * 4);
        parlm_gpt_free(whole);
    }
    ck_assert_int_eq(parlm_comm_barrier(comm), PARLM_OK);
    parlm_gpt *back;
    ck_assert_int_eq(parlm_gpt_load_shards(b, &lay, 1, &back, NULL), PARLM_OK);
    int64_t n = parlm_gpt_num_params(mine);
    for (int k = 0; k < 3; k++)
        ck_assert_mem_eq(fx_buf(back, k), fx_buf(mine, k), (size_t)n * 4);
    parlm_gpt_free(back);
    parlm_gpt_free(mine);
    parlm_gpt_free(full);
}
END_TEST

START_TEST(errors_reach_every_rank)
{
    parlm_gpt *full = fx_trained(&CFG, 1);
    parlm_gpt *mine = my_stage(full);
    parlm_train_state st = {.step = 1};
    char b[128];
    snprintf(b, sizeof b, "%s/err.bin", dir);
    /* the last rank's shard is a step behind */
    if (rank == size - 1)
        ck_assert_int_eq(parlm_gpt_set_step(mine, 0), PARLM_OK);
    ck_assert_int_eq(parlm_checkpoint_save_shards(b, &mine, 1, comm, &st), PARLM_EINVAL);
    ck_assert_int_ne(access(b, F_OK), 0);
    ck_assert_int_eq(parlm_gpt_set_step(mine, 1), PARLM_OK);
    /* rank 0 cannot create the file: the others still finish, with its error */
    char nowhere[160];
    snprintf(nowhere, sizeof nowhere, "%s/none/x.bin", dir);
    ck_assert_int_eq(parlm_checkpoint_save_shards(nowhere, &mine, 1, comm, &st), PARLM_EIO);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "cannot create"));
    parlm_gpt_free(mine);
    /* the last rank holds rank 0's stage again: some layers owned twice, others never */
    int r = rank == size - 1 ? 0 : rank;
    mine = stage_of(full, r * CFG.n_layer / size, (r + 1) * CFG.n_layer / size);
    ck_assert_int_eq(parlm_checkpoint_save_shards(b, &mine, 1, comm, &st), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "each value must be owned exactly once"));
    ck_assert_int_ne(access(b, F_OK), 0);
    /* and the communicator still works */
    ck_assert_int_eq(parlm_comm_barrier(comm), PARLM_OK);
    parlm_gpt_free(mine);
    parlm_gpt_free(full);
}
END_TEST

int main(int argc, char **argv)
{
    if (parlm_dist_init(&argc, &argv, NULL) != PARLM_OK || parlm_comm_world(&comm, NULL) != PARLM_OK ||
        parlm_isa_init() != PARLM_OK) {
        fprintf(stderr, "test_ckpt_shards_mpi: %s\n", parlm_last_error());
        return 1;
    }
    rank = parlm_comm_rank(comm), size = parlm_comm_size(comm);
    if (size > CFG.n_layer) {
        fprintf(stderr, "test_ckpt_shards_mpi: at most %d ranks\n", CFG.n_layer);
        return 1;
    }
    if (rank == 0) {
        strcpy(dir, "/tmp/parlm-ckpt-mpi-XXXXXX");
        if (!mkdtemp(dir))
            return 1;
    }
    parlm_comm_bcast(comm, dir, sizeof dir, 0);
    Suite *s = suite_create("ckpt_shards_mpi");
    TCase *tc = tcase_create("ckpt_shards_mpi");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, stages_across_ranks);
    tcase_add_test(tc, one_replica_saves);
    tcase_add_test(tc, tensor_parallel_ranks);
    tcase_add_test(tc, errors_reach_every_rank);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK); /* every rank runs every test in this process */
    srunner_run_all(sr, rank == 0 ? CK_NORMAL : CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    parlm_comm_barrier(comm);
    if (rank == 0) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            failed++;
    }
    parlm_comm_free(comm);
    parlm_dist_finalize();
    return failed ? 1 : 0;
}
