/* tests/parallel/test_pp.c — the process grid and pipeline parallelism under mpirun
 * (tests/parallel/pp_run.sh: 2 and 4 ranks). Grid: every group holds exactly the ranks the
 * formula rank = (d*pp + p)*tp + t says, in order; disagreeing or impossible layouts stop
 * every rank with a message. Pipeline: layouts (dp, tp, pp) train the `small` model for
 * STEPS steps and are compared with the single-process run every rank computes itself
 * (the full model accumulating the same dp*M micro-batches in order). TOLERANCES below.
 * With dp = 2 the replicas' overlap and ZeRO-1 modes give bitwise sync's results. */
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
#include "parlm/pp.h"
#include "parlm/tp.h"
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
    ck_assert_int_eq(dist_comm_create(&fake, MPI_COMM_WORLD, 1, NULL), PARLM_OK);
    parlm_grid_config tp2 = {2, 1, 1, PARLM_PP_GPIPE, 0, 0};
    all_fail(fake, &mc, &tp2, "spans nodes");
    tp2.allow_tp_across_nodes = 1;
    parlm_grid *g;
    ck_assert_int_eq(parlm_grid_create(&g, fake, &mc, &tp2), PARLM_OK);
    parlm_grid_free(g);
    parlm_comm_free(fake);
}
END_TEST


/* ---- pipeline training vs the single process ----------------------------------------- */
#define PB 1     /* micro-batch: PB sequences of PT tokens */
#define PT 16
#define PV 256
#define STEPS 20
static const parlm_adamw_cfg OPT = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f};

static int llama; /* 1: a Llama model with an untied head, 2: with a tied one */

static parlm_gpt_config pp_model(void)
{
    if (llama) {
        parlm_gpt_config c = {.n_layer = 4, .n_head = 4, .n_embd = 128, .max_seq = 64,
                              .vocab = PV, .arch = PARLM_ARCH_LLAMA, .n_kv_head = 2,
                              .ffn_hidden = 256, .untied_head = llama == 1};
        return c;
    }
    parlm_gpt_config c = {0};
    c.max_seq = 64;
    c.vocab = PV;
    ck_assert_int_eq(parlm_gpt_preset("small", &c), PARLM_OK); /* L4 NH4 C256 */
    return c;
}

/* inputs without repeats (see one_micro_batch_is_bitwise) */
static int distinct_inputs;

/* micro-batch g of step s (g counts over the global batch: dp rank d has d*M .. d*M+M-1) */
static void batch(int s, int g, int32_t *x, int32_t *y)
{
    uint64_t r = (uint64_t)(s * 1000 + g) * 0x9E3779B97F4A7C15ULL + 5;
    for (int i = 0; i < PB * PT; i++) {
        x[i] = (int32_t)(tu_next(&r) % PV);
        y[i] = (int32_t)(tu_next(&r) % PV);
    }
    /* a random offset and stride 1 over the vocabulary: PB*PT < PV different tokens */
    if (distinct_inputs)
        for (int i = 0; i < PB * PT; i++)
            x[i] = (int32_t)((x[0] + i) % PV);
}

typedef struct run_result {
    float loss[STEPS];
    float *grads0; /* full-model gradients of the first step, before the update */
    float *params; /* full-model parameters after the last step */
    int64_t act_bytes, stage0_act_bytes;
} run_result;

static void result_free(run_result *r)
{
    free(r->grads0);
    free(r->params);
}

static void reference_run(parlm_gpt *m, int dp, int M, float clip, run_result *r)
{
    int64_t P = parlm_gpt_num_params(m);
    int32_t x[PB * PT], y[PB * PT];
    for (int s = 0; s < STEPS; s++) {
        double sum = 0;
        ck_assert_int_eq(parlm_gpt_zero_grad(m), PARLM_OK);
        for (int g = 0; g < dp * M; g++) {
            float l;
            batch(s, g, x, y);
            ck_assert_int_eq(parlm_gpt_forward(m, x, y, &l), PARLM_OK);
            ck_assert_int_eq(parlm_gpt_backward(m, 1.0f / (float)(dp * M)), PARLM_OK);
            sum += l;
        }
        r->loss[s] = (float)(sum / (dp * M));
        if (s == 0)
            memcpy(r->grads0, parlm_gpt_grads(m), (size_t)P * sizeof(float));
        float norm;
        ck_assert_int_eq(parlm_gpt_optimizer_step(m, &OPT, clip, &norm), PARLM_OK);
    }
    memcpy(r->params, parlm_gpt_params(m), (size_t)P * sizeof(float));
}

/* the single process: the full model accumulating dp*M micro-batches per step, run on
 * rank 0 and sent to the others (on an oversubscribed machine, every rank running it
 * would only share the same cores) */
static void reference(int dp, int M, float clip, run_result *r)
{
    parlm_gpt_config c = pp_model();
    int64_t P;
    ck_assert_int_eq(parlm_gpt_config_num_params(&c, &P), PARLM_OK);
    r->grads0 = malloc((size_t)P * sizeof(float));
    r->params = malloc((size_t)P * sizeof(float));
    if (rank == 0) {
        parlm_gpt *m;
        ck_assert_int_eq(parlm_gpt_create(&m, &c, 42), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_setup(m, PB, PT, 1), PARLM_OK);
        reference_run(m, dp, M, clip, r);
        parlm_gpt_free(m);
    }
    ck_assert_int_eq(parlm_comm_bcast(world, r->loss, sizeof r->loss, 0), PARLM_OK);
    ck_assert_int_eq(parlm_comm_bcast(world, r->grads0, (size_t)P * sizeof(float), 0), PARLM_OK);
    ck_assert_int_eq(parlm_comm_bcast(world, r->params, (size_t)P * sizeof(float), 0), PARLM_OK);
}

/* the owned tensors of every shard, assembled into the full model's layout on every rank
 * (a sum over the grid where exactly one rank contributes each element: exact) */
static float *gather_full(parlm_grid *g, parlm_gpt *m, int grads, int64_t P)
{
    float *full = calloc((size_t)P, sizeof(float));
    float *src = grads ? parlm_gpt_grads(m) : parlm_gpt_params(m);
    if (parlm_grid_dp_rank(g) == 0)
        for (int i = 0; i < parlm_gpt_num_tensors(m); i++) {
            parlm_gpt_slice sl;
            int64_t off;
            ck_assert_int_eq(parlm_gpt_tensor_slice(m, i, &sl), PARLM_OK);
            ck_assert_int_eq(parlm_gpt_tensor_info(m, i, NULL, NULL, &off, NULL), PARLM_OK);
            if (sl.owner)
                parlm_gpt_slice_copy(&sl, src + off, full + sl.full_offset, 1);
        }
    MPI_Comm wc;
    ck_assert_int_eq(parlm_comm_get_mpi(world, &wc), PARLM_OK);
    ck_assert_int_eq(MPI_Allreduce(MPI_IN_PLACE, full, (int)P, MPI_FLOAT, MPI_SUM, wc),
                     MPI_SUCCESS);
    return full;
}

/* the replicas' averaging of the next train_pp (NULL: parlm_pp_create's sync) */
static const parlm_dp_config *train_dp;

/* overlap's timeline of the last step: buckets started during the last backward, and on a
 * pipeline's end stage the tied embedding's after it (once the end stages summed it) */
static void check_overlap_timeline(const parlm_dp *dp, int end_stage)
{
    const parlm_dp_event *ev;
    int n = parlm_dp_get_events(dp, &ev), during = 0, after = 0;
    double b0 = -1, b1 = -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(ev[i].name, "backward"))
            b0 = ev[i].start, b1 = ev[i].end;
    ck_assert_msg(b1 >= 0, "no backward in the dp timeline");
    for (int i = 0; i < n; i++)
        if (!strcmp(ev[i].name, "allreduce")) {
            during += ev[i].start >= b0 && ev[i].start < b1;
            after += ev[i].start >= b1;
        }
    ck_assert_msg(during > 0, "overlap: no bucket started during the last backward");
    if (end_stage)
        ck_assert_msg(after > 0, "overlap: the tied embedding's buckets did not wait for "
                      "backward's end");
}

static void train_pp(int tp, int pp, int M, parlm_pp_schedule sched, float clip, run_result *r)
{
    parlm_gpt_config c = pp_model();
    parlm_grid_config gc = {tp, pp, M, sched, PT, 0};
    parlm_grid *g;
    ck_assert_msg(parlm_grid_create(&g, world, &c, &gc) == PARLM_OK, "%s", parlm_last_error());
    parlm_gpt_shard sh = parlm_grid_shard(g);
    parlm_gpt *m;
    ck_assert_msg(parlm_gpt_create_shard(&m, &c, &sh, 42) == PARLM_OK, "%s", parlm_last_error());
    parlm_gpt_tp_comm tc;
    if (tp > 1) {
        ck_assert_int_eq(parlm_tp_comm_init(&tc, parlm_grid_comm(g, PARLM_GRID_TP)), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_set_tp_comm(m, &tc), PARLM_OK);
    }
    parlm_pp *p;
    if (train_dp)
        ck_assert_msg(parlm_pp_create_dp(&p, m, g, PB, PT, train_dp) == PARLM_OK, "%s",
                      parlm_last_error());
    else
        ck_assert_msg(parlm_pp_create(&p, m, g, PB, PT, 0) == PARLM_OK, "%s",
                      parlm_last_error());
    int zero1 = train_dp && train_dp->mode == PARLM_DP_ZERO1 && parlm_grid_dp(g) > 1;
    int64_t P;
    ck_assert_int_eq(parlm_gpt_config_num_params(&c, &P), PARLM_OK);
    int d = parlm_grid_dp_rank(g);
    int32_t *x = malloc(sizeof(int32_t) * (size_t)M * PB * PT);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)M * PB * PT);
    for (int s = 0; s < STEPS; s++) {
        for (int i = 0; i < M; i++)
            batch(s, d * M + i, x + i * PB * PT, y + i * PB * PT);
        ck_assert_msg(parlm_pp_run(p, x, y, &r->loss[s]) == PARLM_OK, "%s", parlm_last_error());
        if (s == 0 && !zero1) /* (ZeRO-1 averaged only its block of the gradients) */
            r->grads0 = gather_full(g, m, 1, P);
        float norm;
        ck_assert_msg(parlm_pp_update(p, &OPT, clip, &norm) == PARLM_OK, "%s", parlm_last_error());
    }
    r->params = gather_full(g, m, 0, P);
    ck_assert(parlm_grid_dp(g) > 1 ? parlm_pp_dp(p) != NULL : parlm_pp_dp(p) == NULL);
    if (train_dp && train_dp->mode == PARLM_DP_OVERLAP && parlm_grid_dp(g) > 1)
        check_overlap_timeline(parlm_pp_dp(p), pp > 1);
    /* the tied embedding: the last stage's copy is bitwise the first stage's */
    if (parlm_grid_pp_rank(g) == pp - 1) {
        int64_t off, n;
        parlm_gpt_slice sl;
        ck_assert_int_eq(parlm_gpt_tensor_info(m, 0, NULL, NULL, &off, &n), PARLM_OK);
        ck_assert_int_eq(parlm_gpt_tensor_slice(m, 0, &sl), PARLM_OK);
        float *mine = malloc((size_t)n * sizeof(float));
        parlm_gpt_slice_copy(&sl, mine, r->params + sl.full_offset, 0);
        ck_assert(memcmp(parlm_gpt_params(m) + off, mine, (size_t)n * sizeof(float)) == 0);
        free(mine);
    }
    /* activation memory of stage 0 (slots: M for GPipe, pp for 1F1B), shared with all */
    r->act_bytes = parlm_pp_get_stats(p).activation_bytes;
    r->stage0_act_bytes = r->act_bytes;
    MPI_Comm wc;
    ck_assert_int_eq(parlm_comm_get_mpi(world, &wc), PARLM_OK);
    long long mine = parlm_grid_pp_rank(g) == 0 ? (long long)r->act_bytes : 0, s0 = 0;
    MPI_Allreduce(&mine, &s0, 1, MPI_LONG_LONG, MPI_MAX, wc);
    r->stage0_act_bytes = s0;
    /* the timeline: this stage's forwards and backwards in the schedule's order, in time */
    const parlm_pp_event *ev;
    int nev = parlm_pp_get_events(p, &ev), k = 0;
    parlm_pp_op ops[64];
    ck_assert_int_eq(parlm_pp_schedule_ops(sched, parlm_grid_pp_rank(g), pp, M, ops), PARLM_OK);
    double last = 0;
    for (int i = 0; i < nev; i++) {
        int bwd = strcmp(ev[i].name, "backward") == 0;
        if (!bwd && strcmp(ev[i].name, "forward") != 0)
            continue;
        ck_assert_int_lt(k, 2 * M);
        ck_assert_int_eq(bwd, ops[k].backward);
        ck_assert_int_eq(ev[i].mb, ops[k].mb);
        ck_assert(ev[i].start >= last && ev[i].end >= ev[i].start);
        last = ev[i].end;
        k++;
    }
    ck_assert_int_eq(k, 2 * M);
    free(x);
    free(y);
    parlm_pp_free(p);
    parlm_gpt_free(m);
    parlm_grid_free(g);
}

/* max |a - b| over [from, to) */
static float maxdiff(const float *a, const float *b, int64_t from, int64_t to)
{
    return tu_max_abs_diff(a + from, b + from, to - from);
}

/* TOLERANCES. Without dp, a stage computes its layers exactly as the full model does and
 * accumulates micro-batches in the same order, so the first step's gradients are bitwise
 * the reference's for every tensor but the tied wte: the reference adds, per micro-batch,
 * the LM head's part and then the lookup's, the pipeline sums each part on its own stage
 * and adds the two, so wte differs by float rounding (~1e-7 relative; GRAD_TOL below is
 * 1e-6 of the largest wte gradient). The norm too is summed in another order. From the
 * first update on, every parameter carries that rounding: AdamW divides by sqrt(v), so a
 * relative gradient change of ~1e-6 moves an update by ~lr * 1e-6 unless |g| is near the
 * noise, where the sign of a tiny gradient can flip (an update of up to ~lr). Measured
 * after 20 steps of lr 1e-3: max |dparam| 1.4e-5 (dp 1), 1.2e-5 (dp 2); the bound is lr/10, an
 * order of magnitude below one update of one parameter (lr), so a wrong micro-batch, a
 * missing tied-gradient sum, or a wrong scale (each moving many parameters by ~lr from the
 * first step) fails it. Losses agree to 1e-5 relative. With dp, the average over replicas
 * adds one more rounding of every gradient: the same bounds hold. With tp, every row-
 * parallel matmul, the vocabulary-parallel loss and every gradient of a replicated tensor
 * is summed in another order (not just wte's): measured 6.6e-5 after 20 steps (1.8e-6 on
 * the loss; first-step gradients 2e-7 of the largest), so tp layouts get 3 lr/10 and 1e-5
 * (tests/parallel/test_tp.c derives 1e-3 of each tensor's largest value for tp alone). */
#define LOSS_RTOL 1e-5f
#define PARAM_TOL 1e-4f
#define PARAM_TOL_TP 3e-4f

static void compare(const char *what, const run_result *a, const run_result *ref, int64_t wte,
                    int64_t P, int bitwise_grads, float grad_rtol, float param_tol)
{
    for (int s = 0; s < STEPS; s++)
        ck_assert_msg(fabsf(a->loss[s] - ref->loss[s]) <= LOSS_RTOL * ref->loss[s],
                      "%s: step %d loss %.9g, single process %.9g", what, s, a->loss[s],
                      ref->loss[s]);
    float gmax = tu_max_abs(ref->grads0, wte);
    float gw = maxdiff(a->grads0, ref->grads0, 0, wte);
    float go = maxdiff(a->grads0, ref->grads0, wte, P);
    ck_assert_msg(gw <= grad_rtol * gmax, "%s: wte gradient differs by %g (max %g)", what, gw,
                  gmax);
    if (bitwise_grads)
        ck_assert_msg(go == 0, "%s: a gradient other than wte differs by %g", what, go);
    else
        ck_assert_msg(go <= grad_rtol * tu_max_abs(ref->grads0 + wte, P - wte),
                      "%s: gradients differ by %g", what, go);
    float dp = maxdiff(a->params, ref->params, 0, P), dl = 0;
    for (int s = 0; s < STEPS; s++)
        dl = fmaxf(dl, fabsf(a->loss[s] - ref->loss[s]) / ref->loss[s]);
    if (rank == 0)
        printf("%s: max |dloss|/loss %.2g, wte grad %.2g, other grads %.2g, params %.2g\n", what,
               (double)dl, (double)gw, (double)go, (double)dp);
    ck_assert_msg(dp <= param_tol, "%s: parameters differ by %g after %d steps", what, dp, STEPS);
}

static int64_t wte_floats(void)
{
    parlm_gpt_config c = pp_model();
    return (int64_t)((c.vocab + 127) / 128 * 128) * c.n_embd;
}

START_TEST(pipeline_matches_single_process)
{
    const int M = 4;
    parlm_gpt_config c = pp_model();
    int64_t P, wte = wte_floats();
    ck_assert_int_eq(parlm_gpt_config_num_params(&c, &P), PARLM_OK);
    /* layouts (dp, tp, pp): 2 ranks (1,1,2); 4 ranks (1,1,4), (2,1,2) and (1,2,2) */
    const int pps[2] = {nranks, nranks / 2};
    run_result refs[2];
    memset(refs, 0, sizeof refs);
    for (int li = 0; li < (nranks >= 4 ? 2 : 1); li++) {
        int pp = pps[li], dp = nranks / pp;
        run_result *ref = &refs[li];
        reference(dp, M, 1.0f, ref);
        run_result gp = {0}, ofob = {0};
        char what[64];
        snprintf(what, sizeof what, "(dp %d, tp 1, pp %d) gpipe", dp, pp);
        train_pp(1, pp, M, PARLM_PP_GPIPE, 1.0f, &gp);
        compare(what, &gp, ref, wte, P, dp == 1, 1e-6f, PARAM_TOL);
        snprintf(what, sizeof what, "(dp %d, tp 1, pp %d) 1f1b", dp, pp);
        train_pp(1, pp, M, PARLM_PP_1F1B, 1.0f, &ofob);
        compare(what, &ofob, ref, wte, P, dp == 1, 1e-6f, PARAM_TOL);
        /* the two schedules run the same arithmetic in the same order */
        ck_assert_msg(memcmp(gp.params, ofob.params, (size_t)P * sizeof(float)) == 0,
                      "gpipe and 1f1b parameters differ (max %g)",
                      (double)maxdiff(gp.params, ofob.params, 0, P));
        ck_assert(memcmp(gp.loss, ofob.loss, sizeof gp.loss) == 0);
        /* stage 0 holds M micro-batches with GPipe, pp with 1F1B */
        double ratio = (double)ofob.stage0_act_bytes / (double)gp.stage0_act_bytes;
        if (rank == 0)
            printf("activation memory of stage 0, 1f1b / gpipe: %.3f (pp/M = %.3f)\n", ratio,
                   (double)pp / M);
        /* about pp/M: a little more for the arena's part that does not grow with slots */
        ck_assert_msg(ratio >= (double)pp / M && ratio <= 1.15 * pp / M,
                      "1f1b / gpipe activation memory %.3f, pp/M %.3f", ratio, (double)pp / M);
        result_free(&gp);
        result_free(&ofob);
        if (nranks < 4 || li != 0) /* 4 ranks: layout 0's reference serves once more */
            result_free(ref);
    }
    if (nranks >= 4) {
        /* with tensor parallelism inside each stage: (dp 1, tp 2, pp 2) against the dp 1
         * reference (TP adds the heads' and vocabulary slices' parts in another order, so
         * nothing is bitwise: see TOLERANCES) */
        run_result tpr = {0};
        train_pp(2, 2, M, PARLM_PP_1F1B, 1.0f, &tpr);
        compare("(dp 1, tp 2, pp 2) 1f1b", &tpr, &refs[0], wte, P, 0, 1e-5f, PARAM_TOL_TP);
        result_free(&tpr);
        result_free(&refs[0]);
    }
}
END_TEST

/* A Llama model in a pipeline (1F1B, every rank a stage): with an untied head its wte
 * lives on the first stage only and no tied sum runs; with a tied one, as GPT-2's */
START_TEST(llama_pipeline_matches_single_process)
{
    const int M = 4;
    for (llama = 1; llama <= 2; llama++) {
        parlm_gpt_config c = pp_model();
        int64_t P, wte = wte_floats();
        ck_assert_int_eq(parlm_gpt_config_num_params(&c, &P), PARLM_OK);
        run_result ref = {0}, r = {0};
        reference(1, M, 1.0f, &ref);
        train_pp(1, nranks, M, PARLM_PP_1F1B, 1.0f, &r);
        char what[64];
        snprintf(what, sizeof what, "llama %s head (dp 1, tp 1, pp %d) 1f1b",
                 llama == 1 ? "untied" : "tied", nranks);
        compare(what, &r, &ref, wte, P, 0, 1e-5f, PARAM_TOL);
        result_free(&ref);
        result_free(&r);
    }
    llama = 0;
}
END_TEST

/* Where the order of sums is the same, the pipeline is bitwise the single process: one
 * micro-batch, no clipping (whose norm is summed in another order), and inputs without a
 * repeated token (the reference adds a token's lookup rows one by one onto the LM head's
 * gradient, the first stage sums them first: with one row per token, head + row is the
 * same sum either way). */
START_TEST(one_micro_batch_is_bitwise)
{
    distinct_inputs = 1;
    parlm_gpt_config c = pp_model();
    int64_t P;
    ck_assert_int_eq(parlm_gpt_config_num_params(&c, &P), PARLM_OK);
    run_result ref = {0}, r = {0};
    reference(1, 1, 0.0f, &ref);
    train_pp(1, nranks, 1, PARLM_PP_GPIPE, 0.0f, &r);
    ck_assert(memcmp(r.loss, ref.loss, sizeof r.loss) == 0);
    ck_assert_msg(memcmp(r.params, ref.params, (size_t)P * sizeof(float)) == 0,
                  "parameters differ by %g", (double)maxdiff(r.params, ref.params, 0, P));
    result_free(&ref);
    result_free(&r);
    distinct_inputs = 0;
}
END_TEST

/* The replicas of each shard average with the modes of parlm/dp.h. At dp = 2 every mode
 * adds the same two floats per gradient (and scales by 1/2): overlap only starts the sums
 * earlier, in buckets, and ZeRO-1's reduce-scatter computes the same sums of its block;
 * the global norm is summed over the same dp blocks in every mode and AdamW is elementwise.
 * So overlap and ZeRO-1 must give bitwise sync's losses and parameters (with clipping on:
 * the norm is ~20 at these steps). Small buckets, so that overlap has many. */
START_TEST(dp_modes_match_sync)
{
    if (nranks != 4)
        return;
    parlm_gpt_config c = pp_model();
    int64_t P;
    ck_assert_int_eq(parlm_gpt_config_num_params(&c, &P), PARLM_OK);
    const int layouts[2][2] = {{1, 2}, {2, 1}}; /* (tp, pp), dp = 2 */
    for (int li = 0; li < 2; li++) {
        int tp = layouts[li][0], pp = layouts[li][1];
        run_result sync = {0};
        train_pp(tp, pp, 2, PARLM_PP_1F1B, 1.0f, &sync);
        for (parlm_dp_mode mode = PARLM_DP_OVERLAP; mode <= PARLM_DP_ZERO1; mode++) {
            parlm_dp_config dpc = {mode, 64 << 10, 0, 1, 0};
            run_result r = {0};
            train_dp = &dpc;
            train_pp(tp, pp, 2, PARLM_PP_1F1B, 1.0f, &r);
            train_dp = NULL;
            ck_assert_msg(memcmp(r.loss, sync.loss, sizeof r.loss) == 0,
                          "(dp 2, tp %d, pp %d) %s: losses differ from sync", tp, pp,
                          parlm_dp_mode_name(mode));
            ck_assert_msg(memcmp(r.params, sync.params, (size_t)P * sizeof(float)) == 0,
                          "(dp 2, tp %d, pp %d) %s: parameters differ from sync by %g", tp, pp,
                          parlm_dp_mode_name(mode), (double)maxdiff(r.params, sync.params, 0, P));
            if (rank == 0)
                printf("(dp 2, tp %d, pp %d) %s: bitwise sync's losses and parameters\n", tp,
                       pp, parlm_dp_mode_name(mode));
            result_free(&r);
        }
        result_free(&sync);
    }
    /* local SGD is not composed with the grid */
    parlm_grid_config gc = {1, 2, 2, PARLM_PP_1F1B, PT, 0};
    parlm_grid *g;
    ck_assert_int_eq(parlm_grid_create(&g, world, &c, &gc), PARLM_OK);
    parlm_gpt_shard sh = parlm_grid_shard(g);
    parlm_gpt *m;
    ck_assert_int_eq(parlm_gpt_create_shard(&m, &c, &sh, 1), PARLM_OK);
    parlm_dp_config local = {PARLM_DP_LOCAL, 0, 0, 2, 0};
    parlm_pp *p = (parlm_pp *)1;
    ck_assert_int_eq(parlm_pp_create_dp(&p, m, g, PB, PT, &local), PARLM_EUNSUPPORTED);
    ck_assert_ptr_null(p);
    parlm_gpt_free(m);
    parlm_grid_free(g);
}
END_TEST

START_TEST(pipeline_bad_input)
{
    parlm_gpt_config c = pp_model();
    parlm_grid_config gc = {1, nranks, nranks, PARLM_PP_1F1B, PT, 0};
    parlm_grid *g;
    ck_assert_int_eq(parlm_grid_create(&g, world, &c, &gc), PARLM_OK);
    parlm_gpt_shard sh = parlm_grid_shard(g);
    parlm_gpt *m;
    ck_assert_int_eq(parlm_gpt_create_shard(&m, &c, &sh, 1), PARLM_OK);
    parlm_pp *p = (parlm_pp *)1;
    /* ranks with another micro-batch size all stop, naming it */
    ck_assert_int_eq(parlm_pp_create(&p, m, g, rank == 1 ? 2 : 1, PT, 0), PARLM_EINVAL);
    ck_assert_ptr_null(p);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "micro-batch size"));
    /* or another averaging of the replicas */
    parlm_dp_config mode = {rank == 1 ? PARLM_DP_ZERO1 : PARLM_DP_OVERLAP, 0, 0, 1, 0};
    ck_assert_int_eq(parlm_pp_create_dp(&p, m, g, PB, PT, &mode), PARLM_EINVAL);
    ck_assert_ptr_null(p);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "data-parallel mode"));
    /* a model that is not this rank's shard: every rank fails */
    parlm_gpt *full;
    ck_assert_int_eq(parlm_gpt_create(&full, &c, 1), PARLM_OK);
    ck_assert_int_eq(parlm_pp_create(&p, rank == 0 ? m : full, g, PB, PT, 0), PARLM_EINVAL);
    parlm_gpt_free(full);
    parlm_gpt_free(m);
    parlm_grid_free(g);
}
END_TEST

int main(int argc, char **argv)
{
    if (parlm_dist_init(&argc, &argv, NULL) != PARLM_OK || parlm_comm_world(&world, NULL) != PARLM_OK) {
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
    TCase *tp = tcase_create("pipeline");
    tcase_set_timeout(tp, 240);
    tcase_add_test(tp, pipeline_matches_single_process);
    tcase_add_test(tp, one_micro_batch_is_bitwise);
    tcase_add_test(tp, llama_pipeline_matches_single_process);
    tcase_add_test(tp, dp_modes_match_sync);
    tcase_add_test(tp, pipeline_bad_input);
    suite_add_tcase(s, tp);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK); /* every rank must run every collective */
    srunner_run_all(sr, rank == 0 ? CK_NORMAL : CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    parlm_comm_free(world);
    parlm_dist_finalize();
    return failed ? 1 : 0;
}
