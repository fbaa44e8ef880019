/* bench/tp.c — tensor-parallel decode under mpirun (`mpirun -np 2 parlm-bench tp`): GPT-2
 * 124M (--quick: small) decoded by p ranks, each holding one Megatron shard (1/p of the
 * weights streamed per token, 2 all-reduces of C floats per layer plus the embedding's,
 * and an all-gather of the logit slices), against one process with all the ranks'
 * threads decoding the whole model, in the same run: rank 0 rebinds its team to the whole
 * node for the baseline while the other ranks sleep. Rounds alternate baseline and TP; the
 * best of each is kept (a TP token counts as long as its slowest rank took). The shard's
 * collectives are timed through a wrapper: the share of a token spent in them (waiting for
 * the slower rank included) separates communication from a loaded machine's noise. Then
 * the same for a training step (B=4, T=64, f32, clipped AdamW). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "../apps/cli.h"
#include "bench.h"
#include "parlm.h"

#ifndef PARLM_HAVE_MPI
int bench_tp(bench_ctx *ctx)
{
    (void)ctx;
    fprintf(stderr, "parlm-bench: tp needs MPI; this parlm was configured --without-mpi\n");
    return 1;
}
#else
#include <math.h>
#include <mpi.h>
#include <omp.h>

#define PROMPT 16

/* the group's collectives, timed */
typedef struct timed_comm {
    parlm_gpt_tp_comm inner;
    double seconds;
} timed_comm;

static parlm_status timed_allreduce(void *arg, float *buf, int64_t n)
{
    timed_comm *t = arg;
    double t0 = bench_now();
    parlm_status st = t->inner.allreduce_sum(t->inner.arg, buf, n);
    t->seconds += bench_now() - t0;
    return st;
}

static parlm_status timed_all_gather(void *arg, float *buf, int64_t n)
{
    timed_comm *t = arg;
    double t0 = bench_now();
    parlm_status st = t->inner.all_gather(t->inner.arg, buf, n);
    t->seconds += bench_now() - t0;
    return st;
}

/* decode ndec tokens after the prompt; seconds per token (the prompt is prefilled first,
 * untimed; so are its collectives, when tc counts them) */
static double decode_time(parlm_gpt *m, float *logits, int ndec, int V, timed_comm *tc,
                          parlm_status *st)
{
    int32_t prompt[PROMPT];
    bench_random_tokens(prompt, PROMPT, V, 7);
    if (*st == PARLM_OK)
        *st = parlm_gpt_infer(m, prompt, PROMPT, 0, logits);
    if (tc)
        tc->seconds = 0;
    double t0 = bench_now();
    for (int i = 0; i < ndec && *st == PARLM_OK; i++) {
        int32_t t = (int32_t)(i * 7919 % V);
        *st = parlm_gpt_infer(m, &t, 1, PROMPT + i, logits);
    }
    return (bench_now() - t0) / ndec;
}

/* one training step (B,T): forward, backward and AdamW with the gradient clipped to norm
 * 1: the whole model's fused step, or a shard's owned sum of squares summed over the
 * ranks and the scaled step; seconds */
static double train_step(parlm_gpt *m, int shard, const int32_t *x, const int32_t *y,
                         parlm_status *st)
{
    static const parlm_adamw_cfg opt = {1e-4f, 0.9f, 0.95f, 1e-8f, 0.0f};
    double t0 = bench_now(), ss;
    float loss, norm;
    if (*st == PARLM_OK)
        *st = parlm_gpt_forward(m, x, y, &loss);
    if (*st == PARLM_OK)
        *st = parlm_gpt_backward(m, 1.0f);
    if (*st == PARLM_OK && !shard)
        *st = parlm_gpt_optimizer_step(m, &opt, 1.0f, &norm);
    if (*st == PARLM_OK && shard && (*st = parlm_gpt_grad_sumsq(m, 1, &ss)) == PARLM_OK) {
        MPI_Allreduce(MPI_IN_PLACE, &ss, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        norm = (float)sqrt(ss);
        *st = parlm_gpt_optimizer_step_scale(m, &opt, norm > 1.0f ? 1.0f / norm : 1.0f);
    }
    return bench_now() - t0;
}

int bench_tp(bench_ctx *ctx)
{
    int rank, p;
    if (bench_mpi_world("tp", &rank, &p))
        return 1;
    const char *preset = ctx->quick ? "small" : "d12";
    parlm_gpt_config cfg = {.max_seq = 1024, .vocab = 50257};
    parlm_gpt_shard sh = {p, rank, 0, 0};
    parlm_gpt *full = NULL, *shard = NULL;
    parlm_comm *comm = NULL;
    timed_comm tc = {0};
    parlm_gpt_tp_comm tpc = {timed_allreduce, timed_all_gather, &tc};
    int ok = parlm_gpt_preset(preset, &cfg) == PARLM_OK;
    sh.layer_end = cfg.n_layer;
    ok = ok && parlm_gpt_create_shard(&shard, &cfg, &sh, 1) == PARLM_OK;
    parlm_comm_config cc;
    ok = ok && cli_comm_env("tp", &cc) == 0;
    ok = ok && parlm_comm_world(&comm, &cc) == PARLM_OK && parlm_tp_comm_init(&tc.inner, comm) == PARLM_OK &&
         parlm_gpt_set_tp_comm(shard, &tpc) == PARLM_OK;
    ok = ok && (rank != 0 || parlm_gpt_create(&full, &cfg, 1) == PARLM_OK);
    int all_ok;
    if (!ok)
        fprintf(stderr, "tp: rank %d: %s\n", rank, parlm_last_error());
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    int local_rank, local_size, t = ctx->max_threads, nt;
    parlm_node_rank_env(&local_rank, &local_size);
    float *logits = malloc((size_t)(cfg.vocab + 128) * sizeof(float));
    int rounds = ctx->quick ? 1 : 3, ndec = ctx->quick ? 8 : 32, rc = !all_ok;
    char shape[96];
    for (int bf16 = 0; bf16 < 2 && !rc; bf16++) {
        double best_one = 1e30, best_tp = 1e30, comm_share = 0;
        parlm_status st = PARLM_OK;
        if (full)
            parlm_gpt_set_bf16(full, bf16);
        parlm_gpt_set_bf16(shard, bf16);
        for (int r = 0; r < rounds && st == PARLM_OK; r++) {
            /* one process on the whole node: rank 0 with p x t threads */
            bench_sleepy_barrier();
            if (rank == 0) {
                parlm_place_threads(0, 1, p * t, 1, &nt, NULL, 0);
                double s = decode_time(full, logits, ndec, cfg.vocab, NULL, &st);
                best_one = s < best_one ? s : best_one;
                parlm_place_threads(local_rank, local_size, t, 1, &nt, NULL, 0);
            }
            bench_sleepy_barrier();
            /* tensor parallelism: every rank, t threads each */
            double mine[2], slowest[2]; /* seconds per token, of them in collectives */
            mine[0] = decode_time(shard, logits, ndec, cfg.vocab, &tc, &st);
            mine[1] = tc.seconds / ndec;
            MPI_Allreduce(mine, slowest, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            if (slowest[0] < best_tp) {
                best_tp = slowest[0];
                comm_share = slowest[1] / slowest[0];
            }
        }
        int good = st == PARLM_OK, all_good;
        if (!good)
            fprintf(stderr, "tp: rank %d: %s\n", rank, parlm_last_error());
        MPI_Allreduce(&good, &all_good, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        if (!all_good) {
            rc = 1;
            break;
        }
        const char *impl = bf16 ? "parlm-bf16" : "parlm-f32";
        snprintf(shape, sizeof shape, "%s decode %.1f tok/s, 1 process", preset, 1 / best_one);
        bench_row a = {.bench = "tp", .impl = impl, .shape = shape, .threads = p * t,
                       .seconds = best_one};
        bench_report(ctx, &a);
        snprintf(shape, sizeof shape, "%s decode %.1f tok/s, tp=%d, %.1f%% in collectives",
                 preset, 1 / best_tp, p, 100 * comm_share);
        bench_row b = {.bench = "tp", .impl = impl, .shape = shape, .threads = t,
                       .seconds = best_tp, .ratio = best_one / best_tp,
                       .baseline = "1 process, all threads"};
        bench_report(ctx, &b);
    }
    /* a training step of B=4, T=64 (f32), as parlm-bench train's first shape */
    const int B = 4, T = 64;
    int32_t *x = malloc(sizeof(int32_t) * B * T * 2), *y = x + B * T;
    bench_random_tokens(x, 2 * B * T, cfg.vocab, 99);
    parlm_status st = PARLM_OK;
    if (!rc && full && (parlm_gpt_set_bf16(full, 0) != PARLM_OK ||
                        parlm_gpt_setup(full, B, T, 1) != PARLM_OK))
        st = PARLM_EINVAL;
    if (!rc && (parlm_gpt_set_bf16(shard, 0) != PARLM_OK ||
                parlm_gpt_setup(shard, B, T, 1) != PARLM_OK))
        st = PARLM_EINVAL;
    double best_one = 1e30, best_tp = 1e30, comm_share = 0;
    for (int r = 0; r < rounds + 1 && !rc && st == PARLM_OK; r++) { /* round 0 warms up */
        bench_sleepy_barrier();
        if (rank == 0) {
            parlm_place_threads(0, 1, p * t, 1, &nt, NULL, 0);
            double s = train_step(full, 0, x, y, &st);
            best_one = r > 0 && s < best_one ? s : best_one;
            parlm_place_threads(local_rank, local_size, t, 1, &nt, NULL, 0);
        }
        bench_sleepy_barrier();
        double mine[2], slowest[2];
        tc.seconds = 0;
        mine[0] = train_step(shard, 1, x, y, &st);
        mine[1] = tc.seconds;
        MPI_Allreduce(mine, slowest, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (r > 0 && slowest[0] < best_tp) {
            best_tp = slowest[0];
            comm_share = slowest[1] / slowest[0];
        }
    }
    int good = st == PARLM_OK, all_good;
    if (!good)
        fprintf(stderr, "tp: rank %d: training step: %s\n", rank, parlm_last_error());
    MPI_Allreduce(&good, &all_good, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!rc && all_good) {
        snprintf(shape, sizeof shape, "%s train step B=%d T=%d, 1 process", preset, B, T);
        bench_row a = {.bench = "tp", .impl = "parlm-f32", .shape = shape, .threads = p * t,
                       .seconds = best_one};
        bench_report(ctx, &a);
        snprintf(shape, sizeof shape, "%s train step B=%d T=%d, tp=%d, %.1f%% in collectives",
                 preset, B, T, p, 100 * comm_share);
        bench_row b = {.bench = "tp", .impl = "parlm-f32", .shape = shape, .threads = t,
                       .seconds = best_tp, .ratio = best_one / best_tp,
                       .baseline = "1 process, all threads"};
        bench_report(ctx, &b);
    }
    rc |= !all_good;
    free(x);
    free(logits);
    parlm_gpt_free(full);
    parlm_gpt_free(shard);
    parlm_comm_free(comm);
    return rc;
}
#endif
