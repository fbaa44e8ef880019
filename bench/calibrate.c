/* bench/calibrate.c — `parlm-bench calibrate --out machine.json`: measures the machine
 * profile parlm-plan's cost model reads (parlm/plan.h) with the other benchmarks' timers
 * (peak, stream, bench_gemm_seconds, bench_allreduce_seconds). Compute rates are per core
 * (1 thread, rank 0 alone while the other ranks sleep): GEMM, attention and the
 * elementwise ops (layernorm, GELU, ..., AdamW, and Llama's RMSNorm, RoPE, SwiGLU); STREAM
 * is the whole node's (all ranks at once, summed); links exist only under mpirun with >= 2
 * ranks. */
#include "config.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "parlm.h"

#ifdef PARLM_HAVE_MPI
#include <mpi.h>
#endif

/* GPT-2 training matmuls: rows m = micro-batch tokens, (n, k) = a linear layer's outputs and
 * inputs at C = 768 (d12) and C = 384 (d6). 16 points from 64 to 4096 rows. A point's rate
 * is that of the layer's three GEMMs in training (lib/model/model.c): forward out = inp W^T
 * (NT, m x n x k), dinp = dout W (NN, m x k x n), dW += dout^T inp (TN, n x k x m) — the
 * planner charges 3x the forward FLOPs at this one rate. */
static const int calib_shapes[][3] = {
    {64, 768, 768},    {64, 3072, 768},    {64, 768, 3072},    {256, 768, 768},
    {256, 3072, 768},  {256, 768, 3072},   {1024, 768, 768},   {1024, 3072, 768},
    {1024, 768, 3072}, {4096, 768, 768},   {4096, 3072, 768},  {4096, 768, 3072},
    {128, 1536, 384},  {128, 384, 1536},   {512, 1536, 384},   {512, 384, 1536},
};
#define N_SHAPES ((int)(sizeof calib_shapes / sizeof calib_shapes[0]))
#define CALIB_ROUNDS 3

static double median3(double a, double b, double c)
{
    return fmax(fmin(a, b), fmin(fmax(a, b), c));
}

typedef struct attn_run {
    float *qkv, *out, *lse, *dqkv, *dout;
    int B, T, C, NH, failed;
} attn_run;

static void run_attention(void *p)
{
    attn_run *a = p;
    if (parlm_attention_forward(a->out, a->lse, a->qkv, a->B, a->T, a->C, a->NH) ||
        parlm_attention_backward(a->dqkv, a->dout, a->qkv, a->out, a->lse, a->B, a->T, a->C,
                                 a->NH))
        a->failed = 1;
}

/* Attention forward + backward rate in the planner's units: 3 x 2 C T FLOPs a token (its
 * attention term, parlm/plan.h), one thread. Median over T = 128, 512, 1024 at C = 768. */
static double calib_attention(const bench_ctx *ctx)
{
    static const int Ts[3] = {128, 512, 1024};
    const int C = 768, NH = 12;
    double rate[3];
    omp_set_num_threads(1);
    for (int i = 0; i < 3; i++) {
        int T = Ts[i], B = 1024 / T > 1 ? 1024 / T : 1;
        size_t n3 = (size_t)B * T * 3 * C, n1 = (size_t)B * T * C;
        attn_run a = {parlm_alloc(n3, 4), parlm_alloc(n1, 4), parlm_alloc((size_t)B * NH * T, 4),
                      parlm_alloc(n3, 4), parlm_alloc(n1, 4), B, T, C, NH, 0};
        rate[i] = 0;
        double sec = 0;
        if (a.qkv && a.out && a.lse && a.dqkv && a.dout) {
            for (size_t j = 0; j < n3; j++)
                a.qkv[j] = (float)((j * 2654435761u) % 1000) * 1e-3f - 0.5f, a.dqkv[j] = 0;
            for (size_t j = 0; j < n1; j++)
                a.dout[j] = (float)((j * 40503u) % 1000) * 1e-3f - 0.5f;
            sec = bench_time(run_attention, &a, ctx->min_time);
            if (!a.failed)
                rate[i] = 3.0 * 2.0 * C * (double)T * B * T / sec;
        }
        parlm_free(a.qkv), parlm_free(a.out), parlm_free(a.lse), parlm_free(a.dqkv);
        parlm_free(a.dout);
        char shape[48];
        snprintf(shape, sizeof shape, "B%d T%d C%d NH%d fwd+bwd", B, T, C, NH);
        bench_row r = {.bench = "calibrate", .impl = "attention", .shape = shape, .threads = 1,
                       .seconds = sec, .gflops = rate[i] * 1e-9};
        bench_report(ctx, &r);
    }
    omp_set_num_threads(ctx->max_threads);
    /* median of three */
    double a = rate[0], b = rate[1], c = rate[2];
    return fmax(fmin(a, b), fmin(fmax(a, b), c));
}

/* The non-GEMM ops of a step as the model runs them (lib/model/model.c), one thread, in the
 * planner's elements (parlm_plan_ew). Shapes: 1024 tokens (a d6 or d12 micro-batch) at
 * C = 768; the loss over 2048 logits a row (between the byte tokenizer's 256 and GPT-2's
 * 50304); the optimizer over 4M parameters (1M at --quick): 64 MB of param, grad, m and v
 * come from memory, as in training. Llama's ops (parlm/llama_ops.h): RMSNorm on the same
 * rows, RoPE on a q of 12 heads of 64, SwiGLU of 2C = 1536 units (gate and up: 4C wide,
 * GELU's input). */
enum { EW_ROWS = 1024, EW_C = 768, EW_V = 2048, EW_SMALL = 8192, EW_HS = 64 };

typedef struct ew_run {
    parlm_plan_ew op;
    float *x, *y, *dx, *dy;                    /* big: n_adamw floats each */
    float *w, *b, *dw, *db, *mean, *rstd, *dl; /* small: EW_SMALL floats each */
    float *cos, *sin;                          /* RoPE's table: EW_ROWS x EW_HS */
    int32_t *targets;
    int64_t n_adamw;
    int failed;
} ew_run;

static void run_ew(void *p)
{
    ew_run *a = p;
    const int64_t R = EW_ROWS, C = EW_C, H = 4 * EW_C;
    parlm_status st = PARLM_OK;
    switch (a->op) {
    case PARLM_PLAN_EW_LAYERNORM: /* forward; backward accumulating into dx, dw, db */
        st = parlm_layernorm_forward(a->y, a->mean, a->rstd, a->x, a->w, a->b, R, C);
        if (!st)
            st = parlm_layernorm_backward(a->dx, a->dw, a->db, a->dy, a->x, a->w, a->mean,
                                          a->rstd, R, C);
        break;
    case PARLM_PLAN_EW_GELU: /* the model zeroes the gradient it accumulates into */
        memset(a->dx, 0, (size_t)(R * H) * sizeof(float));
        st = parlm_gelu_forward(a->y, a->x, R * H);
        if (!st)
            st = parlm_gelu_backward(a->dx, a->x, a->dy, R * H);
        break;
    case PARLM_PLAN_EW_RESIDUAL: /* its backward is free: the gradient flows through */
        st = parlm_add(a->y, a->x, a->dy, R * C);
        break;
    case PARLM_PLAN_EW_BIAS:
        st = parlm_bias_forward(a->y, a->b, R, C);
        if (!st)
            st = parlm_bias_backward(a->db, a->dy, R, C);
        break;
    case PARLM_PLAN_EW_CROSSENTROPY:
        st = parlm_crossentropy_forward(a->mean, a->rstd, a->x, a->targets, R, EW_V, EW_V);
        if (!st)
            st = parlm_crossentropy_backward(a->dx, a->x, a->targets, a->rstd, a->dl, R, EW_V,
                                             EW_V);
        break;
    case PARLM_PLAN_EW_RMSNORM:
        st = parlm_rmsnorm_forward(a->y, a->rstd, a->x, a->w, R, C, 1e-5f);
        if (!st)
            st = parlm_rmsnorm_backward(a->dx, a->dw, a->dy, a->x, a->w, a->rstd, R, C);
        break;
    case PARLM_PLAN_EW_ROPE: /* forward then its inverse, in place: x comes back */
        st = parlm_rope_forward(a->x, R, C / EW_HS, EW_HS, C, 0, a->cos, a->sin, R);
        if (!st)
            st = parlm_rope_backward(a->x, R, C / EW_HS, EW_HS, C, 0, a->cos, a->sin, R);
        break;
    case PARLM_PLAN_EW_SWIGLU: /* gu (R, 2 x 2C) in x, out (R, 2C); dgu zeroed as GELU's */
        memset(a->dx, 0, (size_t)(R * H) * sizeof(float));
        st = parlm_swiglu_forward(a->y, a->x, R, H / 2);
        if (!st)
            st = parlm_swiglu_backward(a->dx, a->dy, a->x, R, H / 2);
        break;
    case PARLM_PLAN_EW_ADAMW: { /* gradient norm, update, zeroing (grads stay 0: no denormals) */
        double ss;
        parlm_adamw_cfg cfg = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.0f};
        st = parlm_sumsq(a->dx, a->n_adamw, &ss);
        if (!st)
            st = parlm_adamw_update(a->x, a->dx, a->y, a->dy, a->n_adamw, &cfg, 1, 1.0f);
        memset(a->dx, 0, (size_t)a->n_adamw * sizeof(float));
        break;
    }
    case PARLM_PLAN_NEW:
        break;
    }
    if (st)
        a->failed = 1;
}

/* pr->ew_rate[]: elements per second of each op on one thread; 0 after saying why */
static int calib_elementwise(const bench_ctx *ctx, parlm_plan_profile *pr)
{
    ew_run a = {.n_adamw = ctx->quick ? INT64_C(1) << 20 : INT64_C(1) << 22};
    size_t big = (size_t)EW_ROWS * 4 * EW_C; /* GELU's, the largest of the other ops */
    if (big < (size_t)EW_ROWS * EW_V)
        big = (size_t)EW_ROWS * EW_V;
    if (big < (size_t)a.n_adamw)
        big = (size_t)a.n_adamw;
    float **bigs[] = {&a.x, &a.y, &a.dx, &a.dy};
    float **smalls[] = {&a.w, &a.b, &a.dw, &a.db, &a.mean, &a.rstd, &a.dl};
    int ok = 1;
    for (size_t i = 0; i < 4; i++)
        ok &= (*bigs[i] = parlm_alloc(big, 4)) != NULL;
    for (size_t i = 0; i < 7; i++)
        ok &= (*smalls[i] = parlm_alloc(EW_SMALL, 4)) != NULL;
    ok &= (a.targets = parlm_alloc(EW_ROWS, 4)) != NULL;
    ok &= (a.cos = parlm_alloc((size_t)EW_ROWS * EW_HS, 4)) != NULL;
    ok &= (a.sin = parlm_alloc((size_t)EW_ROWS * EW_HS, 4)) != NULL;
    ok = ok && parlm_rope_table(a.cos, a.sin, EW_ROWS, EW_HS, 10000.0, 1.0) == PARLM_OK;
    int rc = 0;
    if (!ok) {
        fprintf(stderr, "calibrate: cannot allocate the elementwise buffers\n");
        rc = 1;
    }
    omp_set_num_threads(1);
    for (int op = 0; op < PARLM_PLAN_NEW && !rc; op++) {
        for (size_t j = 0; j < big; j++) {
            a.x[j] = (float)((j * 2654435761u) % 1000) * 1e-3f - 0.5f;
            a.dy[j] = (float)((j * 40503u) % 1000) * 1e-3f - 0.5f;
            a.y[j] = a.dx[j] = 0;
        }
        for (int j = 0; j < EW_SMALL; j++)
            a.w[j] = 1.0f, a.b[j] = 0.01f, a.dw[j] = a.db[j] = 0, a.dl[j] = 1.0f / EW_ROWS;
        for (int j = 0; j < EW_ROWS; j++)
            a.targets[j] = (int32_t)((j * 7919u) % EW_V);
        if (op == PARLM_PLAN_EW_ADAMW) /* moments start at 0 (y, dy), gradients too */
            memset(a.dy, 0, big * sizeof(float));
        a.op = (parlm_plan_ew)op;
        double sec = bench_time(run_ew, &a, ctx->min_time);
        double n = op == PARLM_PLAN_EW_GELU ? EW_ROWS * 4.0 * EW_C
                 : op == PARLM_PLAN_EW_SWIGLU ? EW_ROWS * 2.0 * EW_C
                 : op == PARLM_PLAN_EW_CROSSENTROPY ? (double)EW_ROWS * EW_V
                 : op == PARLM_PLAN_EW_ADAMW ? (double)a.n_adamw : (double)EW_ROWS * EW_C;
        if (a.failed || !(sec > 0)) {
            fprintf(stderr, "calibrate: elementwise %s failed: %s\n",
                    parlm_plan_ew_name((parlm_plan_ew)op), parlm_last_error());
            rc = 1;
            break;
        }
        pr->ew_rate[op] = n / sec;
        char shape[48];
        snprintf(shape, sizeof shape, "%.0f elements", n);
        bench_row r = {.bench = "calibrate", .impl = parlm_plan_ew_name((parlm_plan_ew)op),
                       .shape = shape, .threads = 1, .seconds = sec, .gflops = n / sec * 1e-9};
        bench_report(ctx, &r);
    }
    omp_set_num_threads(ctx->max_threads);
    for (size_t i = 0; i < 4; i++)
        parlm_free(*bigs[i]);
    for (size_t i = 0; i < 7; i++)
        parlm_free(*smalls[i]);
    parlm_free(a.targets);
    parlm_free(a.cos);
    parlm_free(a.sin);
    return rc;
}

/* Rank 0's compute part: peak, the GEMM grid (f32; bf16 on a few shapes for the ratio of
 * its path), attention. Returns 0, or 1 after saying why. */
static int calib_compute(bench_ctx *ctx, parlm_plan_profile *pr)
{
    if (bench_peak(ctx) || !(ctx->peak_1t > 0))
        return 1;
    pr->fma_peak_f32 = ctx->peak_1t * 1e9;
    bench_section(ctx, "calibrate: parlm f32 GEMM, 1 thread: a linear layer's forward (NT) + "
                       "backward (NN, TN), GFLOP/s per core, median of 3 interleaved rounds; ratio = "
                       "slowest round / fastest");
    /* The grid is measured in CALIB_ROUNDS interleaved rounds and each point keeps its
     * median: a shared machine's speed drifts over seconds, and one pass in order would
     * bake that drift into the table as a trend across shapes (seen: the last points of
     * one pass 1.7x faster than the first, which the planner read as small micro-batches
     * being faster than large ones). */
    double tall[N_SHAPES][CALIB_ROUNDS];
    double ratio_sum = 0;
    int ratio_n = 0;
    for (int round = 0; round < CALIB_ROUNDS; round++)
        for (int i = 0; i < N_SHAPES; i++) {
            const int *s = calib_shapes[i];
            tall[i][round] = 0;
            if (ctx->quick && s[0] > 1024)
                continue; /* --quick (CI): the 4096-row points take most of the time */
            double mt = ctx->min_time / (3 * CALIB_ROUNDS);
            double t32 = bench_gemm_seconds(s[0], s[1], s[2], 0, 1, 0, 1, mt);
            double tnn = bench_gemm_seconds(s[0], s[2], s[1], 0, 0, 0, 1, mt);
            double ttn = bench_gemm_seconds(s[1], s[2], s[0], 1, 0, 0, 1, mt);
            if (t32 <= 0 || tnn <= 0 || ttn <= 0) {
                fprintf(stderr, "calibrate: cannot allocate a %dx%dx%d GEMM\n", s[0], s[1], s[2]);
                return 1;
            }
            tall[i][round] = t32 + tnn + ttn;
            /* the bf16 path (forward NT) on the d12 shapes of 256 and 1024 rows, once */
            if (round == 0 && (s[0] == 256 || (s[0] == 1024 && s[1] == 3072))) {
                double t16 = bench_gemm_seconds(s[0], s[1], s[2], 0, 1, 1, 1, ctx->min_time);
                if (t16 <= 0)
                    return 1;
                ratio_sum += t32 / t16, ratio_n++;
                char shape[48];
                snprintf(shape, sizeof shape, "%dx%dx%d", s[0], s[1], s[2]);
                double flops = 2.0 * s[0] * s[1] * s[2];
                bench_row b = {.bench = "calibrate", .impl = "parlm-bf16-NT", .shape = shape,
                               .threads = 1, .seconds = t16, .gflops = flops / t16 * 1e-9,
                               .ratio = t32 / t16, .baseline = "parlm-f32"};
                bench_report(ctx, &b);
            }
        }
    for (int i = 0; i < N_SHAPES; i++) {
        const int *s = calib_shapes[i];
        if (!(tall[i][0] > 0))
            continue;
        double t = median3(tall[i][0], tall[i][1], tall[i][2]);
        double lo = fmin(tall[i][0], fmin(tall[i][1], tall[i][2]));
        double hi = fmax(tall[i][0], fmax(tall[i][1], tall[i][2]));
        double flops = 2.0 * s[0] * s[1] * s[2];
        pr->gemm[pr->n_gemm++] = (parlm_plan_gemm_point){s[0], s[1], s[2], 3 * flops / t};
        char shape[48];
        snprintf(shape, sizeof shape, "%dx%dx%d", s[0], s[1], s[2]);
        /* ratio column: the spread of the rounds, slowest / fastest */
        bench_row r = {.bench = "calibrate", .impl = "parlm-f32-train", .shape = shape,
                       .threads = 1, .seconds = t, .gflops = 3 * flops / t * 1e-9,
                       .pct_peak = 100.0 * 3 * flops / t / pr->fma_peak_f32,
                       .ratio = hi / lo, .baseline = "spread of rounds"};
        bench_report(ctx, &r);
    }
    /* the planner scales the f32 GEMM table by fma_peak_bf16 / fma_peak_f32: store the bf16
     * path's measured speed-up over f32 GEMM as that ratio (no native bf16 FMA is assumed) */
    pr->fma_peak_bf16 = pr->fma_peak_f32 * ratio_sum / ratio_n;
    bench_section(ctx, "calibrate: causal attention, 1 thread (planner units: 6 C T FLOPs a token)");
    pr->attention_flops = calib_attention(ctx);
    if (!(pr->attention_flops > 0)) {
        fprintf(stderr, "calibrate: the attention kernels failed: %s\n", parlm_last_error());
        return 1;
    }
    bench_section(ctx, "calibrate: elementwise ops, forward + backward, 1 thread (GFLOP/s "
                       "column: G elements/s; parlm/plan.h says what an element is)");
    return calib_elementwise(ctx, pr);
}

#ifdef PARLM_HAVE_MPI
/* one-way time of an n-byte MPI_Send between ranks 0 and 1: half the best round trip of
 * ping-pongs on rank 0's clock (the caller broadcasts it); the other ranks take no part */
static double pingpong(char *buf, int64_t n, int rank, double min_time)
{
    double best = 1e30;
    int reps = 0;
    for (int i = -1; i < reps; i++) { /* i = -1: warm-up, sets the repetitions for all */
        double t0 = MPI_Wtime();
        if (rank == 0) {
            MPI_Send(buf, (int)n, MPI_BYTE, 1, 7, MPI_COMM_WORLD);
            MPI_Recv(buf, (int)n, MPI_BYTE, 1, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else if (rank == 1) {
            MPI_Recv(buf, (int)n, MPI_BYTE, 0, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buf, (int)n, MPI_BYTE, 0, 7, MPI_COMM_WORLD);
        }
        double rt = MPI_Wtime() - t0;
        if (i < 0) {
            reps = rt > 0 ? (int)fmin(2000.0, fmax(4.0, min_time / rt)) : 4;
            MPI_Bcast(&reps, 1, MPI_INT, 0, MPI_COMM_WORLD);
        } else if (rt < best) {
            best = rt;
        }
    }
    return best / 2;
}

/* The link between the ranks: p2p (ranks 0-1) and parlm all-reduce (all, PARLM_ALGO_AUTO)
 * alpha/beta by least squares over 8 B .. 64 MB. Every rank calls it. */
static int calib_link(bench_ctx *ctx, parlm_plan_profile *pr, int rank, int p)
{
    parlm_comm *comm = NULL;
    if (parlm_comm_world(&comm, NULL) != PARLM_OK) {
        fprintf(stderr, "calibrate: %s\n", parlm_last_error());
        return 1;
    }
    int nodes = parlm_comm_nodes(comm);
    const int64_t max_bytes = ctx->quick ? (INT64_C(4) << 20) : (INT64_C(64) << 20);
    float *buf = parlm_alloc((size_t)(max_bytes / 4), 4);
    if (!buf) {
        parlm_comm_free(comm);
        return 1;
    }
    memset(buf, 0, (size_t)max_bytes);
    enum { MAXS = 32 };
    double bytes[MAXS], t_p2p[MAXS], x_ar[MAXS], t_ar[MAXS];
    int ns = 0, rc = 0;
    char title[160];
    snprintf(title, sizeof title, "calibrate: link of %d ranks on %d node(s): MPI_Send "
             "ping-pong (ranks 0-1) and parlm_allreduce (auto), best of repeats", p, nodes);
    bench_section(ctx, title);
    /* 8 B x 4^k, and max_bytes itself last */
    for (int64_t b = 8; b <= max_bytes && ns < MAXS && !rc;
         b = b < max_bytes && b * 4 > max_bytes ? max_bytes : b * 4) {
        bench_sleepy_barrier();
        double tp = pingpong((char *)buf, b, rank, ctx->min_time / 4);
        MPI_Bcast(&tp, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
        int64_t n = b / 4 > 0 ? b / 4 : 1;
        double ta = bench_allreduce_seconds(comm, buf, n, PARLM_ALGO_AUTO, ctx->min_time / 4);
        if (ta <= 0) {
            rc = 1;
            break;
        }
        bytes[ns] = (double)b, t_p2p[ns] = tp, t_ar[ns] = ta;
        x_ar[ns] = 2.0 * (p - 1) / p * (double)(n * 4); /* ring bytes a rank moves */
        char shape[32];
        snprintf(shape, sizeof shape, "%lldB", (long long)b);
        bench_row r1 = {.bench = "calibrate", .impl = "p2p", .shape = shape, .threads = 2,
                        .seconds = tp, .gbs = (double)b / tp * 1e-9};
        bench_row r2 = {.bench = "calibrate", .impl = "parlm-allreduce", .shape = shape,
                        .threads = p, .seconds = ta, .gbs = x_ar[ns] / ta * 1e-9};
        bench_report(ctx, &r1);
        bench_report(ctx, &r2);
        ns++;
    }
    if (!rc) {
        parlm_plan_link *l = &pr->links[pr->n_links];
        memset(l, 0, sizeof *l);
        snprintf(l->name, sizeof l->name, "%s", nodes > 1 ? "net" : "shm");
        double a1, b1, e1, a2, b2, e2;
        if (parlm_plan_fit_alpha_beta(bytes, t_p2p, ns, &a1, &b1, &e1) ||
            parlm_plan_fit_alpha_beta(x_ar, t_ar, ns, &a2, &b2, &e2)) {
            fprintf(stderr, "calibrate: %s\n", parlm_last_error());
            rc = 1;
        } else {
            /* a ring all-reduce is 2(p-1) steps: the fitted intercept holds 2(p-1) alphas;
             * a negative intercept (noise at the small sizes) is no latency at all */
            l->p2p_alpha = fmax(a1, 0), l->p2p_beta = b1;
            l->allreduce_alpha = fmax(a2, 0) / (2.0 * (p - 1)), l->allreduce_beta = b2;
            if (!(b1 > 0) || !(b2 > 0)) {
                fprintf(stderr, "calibrate: a non-positive fitted bandwidth cost (p2p %g, "
                        "all-reduce %g s/B): too noisy, run again\n", b1, b2);
                rc = 1;
            } else {
                pr->n_links++;
                if (!ctx->json)
                    printf("link %s: p2p alpha %.2f us, beta %.3f ns/B (%.2f GB/s), fit rel. RMS "
                           "error %.1f%%; all-reduce alpha %.2f us a step, beta %.3f ns/B "
                           "(%.2f GB/s), fit rel. RMS error %.1f%% (%d sizes, 8 B - %lld B)\n",
                           l->name, a1 * 1e6, b1 * 1e9, 1e-9 / b1, 100 * e1,
                           l->allreduce_alpha * 1e6, b2 * 1e9, 1e-9 / b2, 100 * e2, ns,
                           (long long)max_bytes);
            }
        }
    }
    parlm_free(buf);
    parlm_comm_free(comm);
    return rc;
}
#endif

int bench_calibrate(bench_ctx *ctx)
{
    int rank = 0, p = 1;
#ifdef PARLM_HAVE_MPI
    int inited = 0;
    MPI_Initialized(&inited);
    if (inited) {
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &p);
    }
#endif
    static parlm_plan_profile pr; /* ~2 KB of GEMM points: not on the stack */
    memset(&pr, 0, sizeof pr);
    /* Every rank measures its core at once, the same points in the same order, and rank 0
     * keeps its own figures: a core's rate with the node's other cores busy is what a
     * training step gets (measured here: two cores' FMA peak was 1.46x one core's, and a
     * profile taken with the other rank asleep predicted steps 40% too fast). */
    bench_ctx mine = *ctx;
    mine.silent = ctx->silent || rank != 0;
    int rc = calib_compute(&mine, &pr);
    ctx->peak_1t = mine.peak_1t;
#ifdef PARLM_HAVE_MPI
    if (p > 1) {
        MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        if (rc)
            return 1;
    }
#endif
    /* STREAM: every rank at once with its threads, summed: the node's bandwidth when the
     * ranks share one node (the planner divides it by the ranks per node) */
    if (!rc && bench_stream(ctx))
        rc = 1;
    double gbs = ctx->stream_gbs;
#ifdef PARLM_HAVE_MPI
    if (p > 1) {
        MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        MPI_Allreduce(MPI_IN_PLACE, &gbs, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    }
#endif
    pr.stream_bandwidth = gbs * 1e9;
    if (rc)
        return 1;
    const char *links_from = NULL;
#ifdef PARLM_HAVE_MPI
    if (p > 1 && calib_link(ctx, &pr, rank, p))
        return 1;
#endif
    if (p == 1 && ctx->links) {
        parlm_plan_profile other;
        if (parlm_plan_profile_load(ctx->links, &other) != PARLM_OK) {
            fprintf(stderr, "calibrate: --links: %s\n", parlm_last_error());
            return 1;
        }
        pr.n_links = other.n_links;
        memcpy(pr.links, other.links, sizeof pr.links);
        links_from = ctx->links;
    }
    if (rank != 0)
        return 0;
    if (!ctx->json) {
        printf("profile: f32 FMA peak %.1f GFLOP/s a core, bf16 GEMM path x%.2f of f32 "
               "(fma_peak_bf16 %.1f), %d GEMM points, attention %.1f GFLOP/s, STREAM %.1f GB/s "
               "(%d rank(s))\n", pr.fma_peak_f32 * 1e-9, pr.fma_peak_bf16 / pr.fma_peak_f32,
               pr.fma_peak_bf16 * 1e-9, pr.n_gemm, pr.attention_flops * 1e-9, gbs, p);
        printf("elementwise (M elements/s a core):");
        for (int i = 0; i < PARLM_PLAN_NEW; i++)
            printf(" %s %.0f", parlm_plan_ew_name((parlm_plan_ew)i), pr.ew_rate[i] * 1e-6);
        printf("\n");
        if (p > 1)
            printf("links: measured over %d ranks (above)\n", p);
        else if (links_from)
            printf("links: copied from --links %s (%d link(s)), not measured\n", links_from,
                   pr.n_links);
        else
            printf("links: none (1 rank: run under mpirun -np 2, or give --links FILE); "
                   "the profile plans 1-rank layouts only\n");
    }
    if (ctx->out) {
        if (parlm_plan_profile_save(ctx->out, &pr) != PARLM_OK) {
            fprintf(stderr, "calibrate: %s\n", parlm_last_error());
            return 1;
        }
        if (!ctx->json)
            printf("wrote %s\n", ctx->out);
    }
    return 0;
}
