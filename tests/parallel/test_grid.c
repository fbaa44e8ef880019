/* tests/parallel/test_grid.c — the process grid's arithmetic without MPI: layout checks
 * and their messages, rank coordinates, the stage split against an exhaustive search,
 * and the pipeline schedules run through a simulated pipeline (dependencies across
 * stages, micro-batches in flight, and the bubble of a unit-cost timeline, which must be
 * exactly (pp-1)/(M+pp-1) for both schedules). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parlm.h"
#include "parlm/grid.h"

static parlm_gpt_config model(const char *preset, int T)
{
    parlm_gpt_config c = {0};
    c.max_seq = T;
    c.vocab = 50257;
    ck_assert_int_eq(parlm_gpt_preset(preset, &c), PARLM_OK);
    c.vocab_pad = 50304;
    return c;
}

static void expect_error(const parlm_gpt_config *c, int nranks, parlm_grid_config gc,
                         const char *a, const char *b)
{
    ck_assert_int_eq(parlm_grid_check(c, nranks, &gc), PARLM_EINVAL);
    const char *msg = parlm_last_error();
    ck_assert_msg(strstr(msg, a) && strstr(msg, b), "message '%s' lacks '%s' or '%s'", msg, a, b);
}

START_TEST(layout_checks)
{
    parlm_gpt_config c = model("small", 64); /* L4 NH4 C256 */
    parlm_grid_config ok = {2, 2, 4, PARLM_PP_1F1B, 64, 0};
    ck_assert_int_eq(parlm_grid_check(&c, 8, &ok), PARLM_OK);
    ck_assert_int_eq(parlm_grid_check(&c, 4, &ok), PARLM_OK);
    parlm_grid_config g = ok;
    expect_error(&c, 6, g, "6 ranks", "2 x 2");               /* ranks % (tp*pp) */
    g = ok, g.tp = 3;
    expect_error(&c, 6, g, "4 heads", "tp 3");                /* heads % tp */
    g = ok, g.tp = 1, g.pp = 5;
    expect_error(&c, 5, g, "4 layers", "pp 5");               /* layers < pp */
    g = ok, g.micro_batches = 1;
    expect_error(&c, 4, g, "pp = 2", "got 1");                /* 1F1B needs M >= pp */
    g.schedule = PARLM_PP_GPIPE;                              /* GPipe does not */
    ck_assert_int_eq(parlm_grid_check(&c, 4, &g), PARLM_OK);
    g = ok, g.micro_batches = 0, g.schedule = PARLM_PP_GPIPE;
    expect_error(&c, 4, g, "micro-batches 0", ">= 1");
    g = ok, g.seq_len = 65;
    expect_error(&c, 4, g, "65", "max_seq 64");
    /* heads and MLP divide by 3, the padded vocabulary (a multiple of 128) does not */
    parlm_gpt_config c3 = {.n_layer = 2, .n_head = 6, .n_embd = 384, .max_seq = 64, .vocab = 200};
    g = ok, g.tp = 3, g.pp = 1;
    expect_error(&c3, 3, g, "256 rows", "tp 3");
    g.tp = 2;
    ck_assert_int_eq(parlm_grid_check(&c3, 2, &g), PARLM_OK);
    /* a broken model config is the model's own message */
    parlm_gpt_config bad = c;
    bad.n_embd = 0;
    ck_assert_int_eq(parlm_grid_check(&bad, 4, &ok), PARLM_EINVAL);
    ck_assert_int_eq(parlm_grid_check(NULL, 4, &ok), PARLM_EINVAL);
}
END_TEST

START_TEST(tp_groups_stay_in_a_node)
{
    parlm_grid_config g = {2, 2, 2, PARLM_PP_GPIPE, 0, 0};
    const int good[8] = {0, 0, 0, 0, 1, 1, 1, 1}, odd[8] = {0, 0, 0, 1, 1, 1, 1, 1};
    ck_assert_int_eq(parlm_grid_check_nodes(8, &g, good), PARLM_OK);
    ck_assert_int_eq(parlm_grid_check_nodes(8, &g, odd), PARLM_EINVAL);
    const char *msg = parlm_last_error();
    ck_assert_msg(strstr(msg, "ranks 2..3") && strstr(msg, "rank 3 on node 1"), "%s", msg);
    g.tp = 1; /* pipeline and data groups may span nodes */
    ck_assert_int_eq(parlm_grid_check_nodes(8, &g, odd), PARLM_OK);
    g.tp = 2, g.allow_tp_across_nodes = 1;
    ck_assert_int_eq(parlm_grid_check_nodes(8, &g, odd), PARLM_OK);
}
END_TEST

START_TEST(coordinates)
{
    /* rank = (d*pp + p)*tp + t, every rank once */
    for (int tp = 1; tp <= 4; tp++)
        for (int pp = 1; pp <= 4; pp++)
            for (int r = 0; r < 3 * tp * pp; r++) {
                int d, t, p;
                parlm_grid_coords(r, tp, pp, &d, &t, &p);
                ck_assert(t >= 0 && t < tp && p >= 0 && p < pp && d >= 0 && d < 3);
                ck_assert_int_eq((d * pp + p) * tp + t, r);
            }
}
END_TEST

/* the exhaustive reference: every composition of L into pp positive parts, best by
 * (max cost, then sum of squared costs) */
static void brute_split(const parlm_gpt_config *c, int T, int pp, int *best)
{
    int L = c->n_layer, b[16];
    double bmax = INFINITY, bsq = INFINITY;
    b[0] = 0;
    b[pp] = L;
    /* enumerate the inner bounds as an increasing sequence */
    for (int i = 1; i < pp; i++)
        b[i] = i;
    for (;;) {
        double mx = 0, sq = 0;
        for (int s = 0; s < pp; s++) {
            double x = parlm_pp_stage_cost(c, T, b[s], b[s + 1]);
            mx = fmax(mx, x);
            sq += x * x;
        }
        if (mx < bmax * (1 - 1e-12) || (mx <= bmax * (1 + 1e-12) && sq < bsq * (1 - 1e-12))) {
            bmax = mx, bsq = sq;
            memcpy(best, b, sizeof(int) * (size_t)(pp + 1));
        }
        int i = pp - 1;
        while (i >= 1 && b[i] == L - (pp - i))
            i--;
        if (i < 1)
            break;
        b[i]++;
        for (int j = i + 1; j < pp; j++)
            b[j] = b[j - 1] + 1;
    }
}

START_TEST(stage_split)
{
    /* GPT-2 124M at T 1024: the head costs ~5 layers, so the first stage takes 8 */
    parlm_gpt_config g = model("d12", 1024);
    double head = parlm_pp_stage_cost(&g, 1024, 12, 12);
    ck_assert_msg(head > 4.5 && head < 5.5, "LM head = %.2f layers", head);
    int b[16];
    ck_assert_int_eq(parlm_pp_split(&g, 1024, 2, b), PARLM_OK);
    ck_assert_int_eq(b[0], 0);
    ck_assert_int_eq(b[1], 8);
    ck_assert_int_eq(b[2], 12);
    ck_assert_int_eq(parlm_pp_split(&g, 1024, 1, b), PARLM_OK);
    ck_assert_int_eq(b[1], 12);
    ck_assert_int_eq(parlm_pp_split(&g, 1024, 12, b), PARLM_OK); /* one layer each */
    for (int s = 0; s <= 12; s++)
        ck_assert_int_eq(b[s], s);
    ck_assert_int_eq(parlm_pp_split(&g, 1024, 13, b), PARLM_EINVAL);
    /* against the exhaustive search, on models where the head weighs 0.3 to 30 layers */
    const char *presets[] = {"tiny", "small", "d6", "d12"};
    const int vocab[] = {256, 50257};
    for (int pi = 0; pi < 4; pi++)
        for (int vi = 0; vi < 2; vi++)
            for (int L = 1; L <= 9; L++)
                for (int pp = 1; pp <= L && pp <= 5; pp++) {
                    parlm_gpt_config c = model(presets[pi], 256);
                    c.n_layer = L;
                    c.vocab = vocab[vi];
                    c.vocab_pad = (c.vocab + 127) / 128 * 128;
                    int want[16], got[16];
                    brute_split(&c, 256, pp, want);
                    ck_assert_int_eq(parlm_pp_split(&c, 256, pp, got), PARLM_OK);
                    for (int s = 0; s <= pp; s++)
                        ck_assert_msg(got[s] == want[s], "%s V%d L%d pp%d: bound %d is %d, want %d",
                                      presets[pi], c.vocab, L, pp, s, got[s], want[s]);
                }
}
END_TEST

/* ---- schedules through a simulated pipeline ----------------------------------------
 * Each op starts when its stage is free and its input exists: F(i) on stage s needs
 * F(i) on s-1, B(i) on s needs B(i) on s+1 and F(i) on s. f and b are the costs. */
#define MAXP 6
#define MAXM 12
static double simulate(parlm_pp_schedule kind, int pp, int M, double f, double b, double *busy)
{
    parlm_pp_op ops[MAXP][2 * MAXM];
    double fdone[MAXP][MAXM], bdone[MAXP][MAXM], free_at[MAXP] = {0};
    int next[MAXP] = {0};
    for (int s = 0; s < pp; s++) {
        ck_assert_int_eq(parlm_pp_schedule_ops(kind, s, pp, M, ops[s]), PARLM_OK);
        for (int i = 0; i < M; i++)
            fdone[s][i] = bdone[s][i] = -1;
    }
    int left = 2 * M * pp;
    while (left > 0) {
        int progress = 0;
        for (int s = 0; s < pp; s++) {
            while (next[s] < 2 * M) {
                parlm_pp_op op = ops[s][next[s]];
                double ready = free_at[s];
                if (!op.backward) {
                    if (s > 0 && fdone[s - 1][op.mb] < 0)
                        break;
                    if (s > 0)
                        ready = fmax(ready, fdone[s - 1][op.mb]);
                    fdone[s][op.mb] = free_at[s] = ready + f;
                } else {
                    ck_assert_msg(fdone[s][op.mb] >= 0, "stage %d: backward %d before forward",
                                  s, op.mb);
                    if (s < pp - 1 && bdone[s + 1][op.mb] < 0)
                        break;
                    if (s < pp - 1)
                        ready = fmax(ready, bdone[s + 1][op.mb]);
                    bdone[s][op.mb] = free_at[s] = ready + b;
                }
                next[s]++, left--, progress = 1;
            }
        }
        ck_assert_msg(progress, "%s pp %d M %d: deadlock", parlm_pp_schedule_name(kind), pp, M);
    }
    double end = 0;
    for (int s = 0; s < pp; s++)
        end = fmax(end, free_at[s]);
    *busy = M * (f + b);
    return end;
}

START_TEST(schedules)
{
    for (int kind = 0; kind < 2; kind++)
        for (int pp = 1; pp <= MAXP; pp++)
            for (int M = 1; M <= MAXM; M++) {
                if (kind == PARLM_PP_1F1B && M < pp)
                    continue; /* refused by parlm_grid_check */
                for (int s = 0; s < pp; s++) {
                    parlm_pp_op ops[2 * MAXM];
                    ck_assert_int_eq(parlm_pp_schedule_ops(kind, s, pp, M, ops), PARLM_OK);
                    int fseen[MAXM] = {0}, bseen[MAXM] = {0}, inflight = 0, peak = 0, nb = 0;
                    for (int k = 0; k < 2 * M; k++) {
                        int i = ops[k].mb;
                        ck_assert(i >= 0 && i < M);
                        if (!ops[k].backward) {
                            ck_assert_int_eq(fseen[i]++, 0);
                            peak = ++inflight > peak ? inflight : peak;
                        } else {
                            ck_assert_int_eq(fseen[i], 1);
                            ck_assert_int_eq(bseen[i]++, 0);
                            ck_assert_int_eq(i, nb++); /* backwards in micro-batch order */
                            inflight--;
                        }
                    }
                    ck_assert_int_eq(peak, parlm_pp_max_in_flight(kind, s, pp, M));
                    if (kind == PARLM_PP_1F1B)
                        ck_assert_int_le(peak, pp - s);
                }
                /* unit costs and backward = 2 forwards: the bubble is the formula */
                for (int c = 1; c <= 2; c++) {
                    double busy, end = simulate(kind, pp, M, 1, c, &busy);
                    double bubble = 1 - busy / end, want = (double)(pp - 1) / (M + pp - 1);
                    ck_assert_msg(fabs(bubble - want) < 1e-12, "%s pp %d M %d: bubble %f, want %f",
                                  parlm_pp_schedule_name(kind), pp, M, bubble, want);
                }
            }
    /* 1F1B holds pp/M of GPipe's activations on the first stage */
    ck_assert_int_eq(parlm_pp_max_in_flight(PARLM_PP_1F1B, 0, 4, 16), 4);
    ck_assert_int_eq(parlm_pp_max_in_flight(PARLM_PP_GPIPE, 0, 4, 16), 16);
    ck_assert_int_eq(parlm_pp_max_in_flight(PARLM_PP_1F1B, 3, 4, 16), 1);
    parlm_pp_op ops[4];
    ck_assert_int_eq(parlm_pp_schedule_ops(PARLM_PP_GPIPE, 2, 2, 2, ops), PARLM_EINVAL);
    ck_assert_int_eq(parlm_pp_schedule_ops((parlm_pp_schedule)7, 0, 2, 2, ops), PARLM_EINVAL);
    parlm_pp_schedule k;
    ck_assert_int_eq(parlm_pp_schedule_parse("1f1b", &k), PARLM_OK);
    ck_assert_int_eq(k, PARLM_PP_1F1B);
    ck_assert_int_eq(parlm_pp_schedule_parse("interleaved", &k), PARLM_EINVAL);
    ck_assert_ptr_nonnull(strstr(parlm_last_error(), "interleaved"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("grid");
    TCase *tc = tcase_create("grid");
    tcase_add_test(tc, layout_checks);
    tcase_add_test(tc, tp_groups_stay_in_a_node);
    tcase_add_test(tc, coordinates);
    tcase_add_test(tc, stage_split);
    tcase_add_test(tc, schedules);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
