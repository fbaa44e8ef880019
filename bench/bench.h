/* bench/bench.h — shared harness of parlm-bench: timing, context and reporting.
 * Every benchmark times its baseline in the same run and reports the ratio; times
 * are the best of repeated runs (the least disturbed by a noisy, shared machine). */
#ifndef PARLM_BENCH_H
#define PARLM_BENCH_H
#include <stdint.h>
#include <stdio.h>

typedef struct bench_ctx {
    int json;          /* --json: one JSON document on stdout instead of tables */
    int quick;         /* --quick: fewer sizes and repetitions (CI smoke run) */
    int max_threads;   /* "all threads" = this (omp_get_max_threads() by default) */
    double min_time;   /* seconds of repetitions per measurement (--time) */
    double peak_1t;    /* measured f32 FMA peak of one core, GFLOP/s (0 = not measured) */
    double stream_gbs; /* measured STREAM-triad bandwidth at max_threads, GB/s (0 = not measured) */
    const char *trace; /* --trace FILE: dp / mp write a Chrome trace of one step per mode (or NULL) */
    int seq;           /* --seq T: mp's sequence length (0: its default, 64) */
    const char *layouts; /* --layouts LIST: mp runs only the layouts named (or NULL: all) */
    const char *out;   /* calibrate --out FILE: the machine profile (parlm/plan.h) */
    const char *links; /* calibrate --links FILE: a profile whose links a 1-rank run copies */
    int silent;        /* print nothing (ranks other than 0 measuring alongside it) */
} bench_ctx;

/* One measurement. Unused numeric fields are 0 and left out of the output. */
typedef struct bench_row {
    const char *bench;  /* "gemm", "gemv", "peak", "stream", ... */
    const char *impl;   /* "parlm-f32", "parlm-bf16", "openblas", "naive", ... */
    const char *shape;  /* "256x768x768 NN", "1x50304x768 NT", ... */
    int threads;
    double seconds;     /* best time of one call */
    double gflops;
    double gbs;         /* GB/s moved (memory-bound benchmarks) */
    double pct_peak;    /* percent of threads * peak_1t, or of stream_gbs */
    double ratio;       /* this / baseline (named in `baseline`) */
    const char *baseline;
    /* the split of a training step (dp), seconds */
    double compute;     /* forward + backward */
    double comm;        /* communication the step waited for (exposed) */
    double progress;    /* overlap: communication work done inside backward (part of compute) */
    double opt;         /* gradient norm and optimizer */
    /* overlap efficiency, percent; may be negative or above 100: printed when nonzero */
    double hidden_pct;      /* share of the blocking all-reduce time neither waited for nor
                             * spent progressing inside backward */
    double hidden_step_pct; /* the same seen in step times, against a no-communication run */
} bench_row;

double bench_now(void); /* monotonic seconds */

/* Best seconds per call of fn(arg): one warm-up call, then repeats until min_time has
 * passed (at least 3 calls). */
double bench_time(void (*fn)(void *), void *arg, double min_time);

/* Starts a section (a table header, or nothing in JSON mode). */
void bench_section(const bench_ctx *ctx, const char *title);
void bench_report(const bench_ctx *ctx, const bench_row *row);
/* Opens/closes the JSON document (no-ops in table mode). */
void bench_begin(const bench_ctx *ctx);
void bench_end(const bench_ctx *ctx);

/* Model helpers (bench/model.c): n tokens uniform in [0, V) from seed; the model FLOPs of
 * one training step of batch B x T. */
struct parlm_gpt;
void bench_random_tokens(int32_t *t, int64_t n, int V, uint64_t seed);
double bench_step_flops(const struct parlm_gpt *m, int B, int T);

/* The benchmarks; each returns 0, or 1 after printing why it could not run. */
int bench_peak(bench_ctx *ctx);   /* sets ctx->peak_1t */
int bench_stream(bench_ctx *ctx); /* sets ctx->stream_gbs */
int bench_gemm(bench_ctx *ctx);   /* parlm f32/bf16 vs OpenBLAS vs naive; square + LLM shapes */
int bench_gemv(bench_ctx *ctx);   /* decode GEMVs vs STREAM bandwidth */
int bench_train(bench_ctx *ctx);  /* a GPT-2 124M training step: ms, MFU (f32, bf16) */
int bench_generate(bench_ctx *ctx); /* prefill tokens/s, decode tokens/s vs bandwidth bound */
/* the non-GEMM kernels of the selected ISA table vs the scalar one, one thread */
int bench_kernels(bench_ctx *ctx);
/* all-reduce bus bandwidth: parlm ring / shm / rd vs MPI_Allreduce; run under mpirun.
 * bench_mpi_init initializes MPI and returns the world rank (-1 on error); ranks other
 * than 0 then write stdout to /dev/null, so tables and JSON come from rank 0 alone. */
int bench_allreduce(bench_ctx *ctx);
/* data-parallel GPT-2 124M training step (sync, overlap, ZeRO-1 vs no communication):
 * step time split into compute / exposed communication / optimizer, the share of the
 * all-reduce that overlap hides, and with ctx->trace a Chrome trace; run under mpirun */
int bench_dp(bench_ctx *ctx);
/* tensor-parallel decode over the ranks vs one process with all their threads; mpirun */
int bench_tp(bench_ctx *ctx);
/* model-parallel GPT-2 124M training step: every (dp, tp, pp) layout of the ranks vs no
 * communication; split, bubble vs formula, memory per rank; ctx->trace: a Chrome trace */
int bench_mp(bench_ctx *ctx);
/* the machine profile of parlm-plan (parlm/plan.h): FMA peaks, a GEMM grid, attention,
 * STREAM on one core / the node, and under mpirun the links' alpha/beta; rank 0 writes
 * ctx->out */
int bench_calibrate(bench_ctx *ctx);
/* Best seconds per call of parlm's f32 (bf16 = 0) or bf16 GEMM at M x N x K (ta, tb:
 * transposed operands) on `threads` threads; < 0 if the operands cannot be allocated. */
double bench_gemm_seconds(int64_t M, int64_t N, int64_t K, int ta, int tb, int bf16,
                          int threads, double min_time);
/* MPI builds: best seconds of parlm_allreduce(comm, buf, n floats, flags) (flags ~0u:
 * MPI_Allreduce), a call counting as its slowest rank; < 0 if a rank failed. */
struct parlm_comm;
double bench_allreduce_seconds(struct parlm_comm *comm, float *buf, int64_t n, unsigned flags,
                               double min_time);
int bench_mpi_init(int *argc, char ***argv);
void bench_mpi_finalize(void);
/* MPI initialized (bench_mpi_init if needed), this rank and the number of ranks; 1 after
 * saying so if there are fewer than 2 (bench names the benchmark in the message) */
int bench_mpi_world(const char *bench, int *rank, int *p);
/* MPI_COMM_WORLD barrier that sleeps while it waits (a busy MPI_Barrier would take a core
 * from a baseline that runs on one rank with the whole node's threads) */
void bench_sleepy_barrier(void);
#endif
