/* bench/allreduce.c — all-reduce bandwidth of parlm's paths (ring, shared memory,
 * recursive doubling, automatic choice, ring with a bf16 wire) against MPI_Allreduce,
 * in the same run, 4 KB to 256 MB. Run under mpirun (`mpirun -np 2 parlm-bench
 * allreduce`); rank 0 reports. Bus bandwidth = 2(p-1)/p * bytes / time (the bytes each
 * rank must move in an optimal all-reduce); ratio = MPI_Allreduce time / this time.
 * parlm-shm-shared runs on a buffer from parlm_comm_alloc_shared (the zero-copy path a
 * data-parallel run's gradients take).
 * Timing: each call starts after a barrier and counts as long as its slowest rank took;
 * the best call is kept (as bench_time does: on a shared machine, the least disturbed). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../apps/cli.h"
#include "bench.h"
#include "parlm.h"

#ifndef PARLM_HAVE_MPI
/* a --without-mpi build: the benchmark says so instead of running */
int bench_mpi_init(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fprintf(stderr, "parlm-bench: allreduce and dp need MPI; this parlm was configured --without-mpi\n");
    return -1;
}
void bench_mpi_finalize(void) {}
int bench_allreduce(bench_ctx *ctx)
{
    (void)ctx;
    return 1;
}
#else
#include <mpi.h>
#include <time.h>

int bench_mpi_init(int *argc, char ***argv)
{
    int level = 0, rank = 0;
    if (parlm_dist_init(argc, argv, &level) != PARLM_OK) {
        fprintf(stderr, "parlm-bench: %s\n", parlm_last_error());
        return -1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank != 0 && !freopen("/dev/null", "w", stdout))
        return -1;
    return rank;
}

void bench_mpi_finalize(void) { parlm_dist_finalize(); }

typedef struct ar_case {
    parlm_comm *comm;
    float *buf;
    int64_t n;
    unsigned flags; /* parlm algorithm; ~0u = MPI_Allreduce itself */
    int failed;
} ar_case;

static void run_case(ar_case *c)
{
    if (c->flags == ~0u) {
        MPI_Allreduce(MPI_IN_PLACE, c->buf, (int)c->n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    } else if (parlm_allreduce(c->comm, c->buf, c->n, PARLM_REDUCE_SUM, c->flags) != PARLM_OK) {
        if (!c->failed)
            fprintf(stderr, "allreduce: %s\n", parlm_last_error());
        c->failed = 1;
    }
}

/* Best seconds per call, a call's time being the slowest rank's: barrier, one call, max
 * over ranks. Every rank sees the same maxima, so all agree on when to stop. */
static double time_case(ar_case *c, double min_time)
{
    run_case(c); /* warm-up: page faults, scratch, connections */
    double best = 1e30, spent = 0;
    for (int reps = 0; reps < 3 || (spent < min_time && reps < 1000); reps++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        run_case(c);
        double mine = MPI_Wtime() - t0, slowest;
        MPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        spent += slowest;
        best = slowest < best ? slowest : best;
    }
    return best;
}

double bench_allreduce_seconds(parlm_comm *comm, float *buf, int64_t n, unsigned flags,
                               double min_time)
{
    ar_case c = {comm, buf, n, flags, 0};
    double sec = time_case(&c, min_time);
    int failed = 0;
    MPI_Allreduce(&c.failed, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return failed ? -1.0 : sec;
}

static void size_name(char *s, size_t cap, int64_t bytes)
{
    if (bytes >= (1 << 20))
        snprintf(s, cap, "%lldMB", (long long)(bytes >> 20));
    else
        snprintf(s, cap, "%lldKB", (long long)(bytes >> 10));
}

int bench_mpi_world(const char *bench, int *rank, int *p)
{
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited && bench_mpi_init(NULL, NULL) < 0)
        return 1;
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, p);
    if (*p < 2) {
        fprintf(stderr, "%s: needs 2 or more ranks: mpirun -np 2 parlm-bench %s\n", bench, bench);
        return 1;
    }
    return 0;
}

void bench_sleepy_barrier(void)
{
    MPI_Request r;
    int done = 0;
    MPI_Ibarrier(MPI_COMM_WORLD, &r);
    while (!done) {
        MPI_Test(&r, &done, MPI_STATUS_IGNORE);
        if (!done)
            nanosleep(&(struct timespec){0, 200000}, NULL);
    }
}

int bench_allreduce(bench_ctx *ctx)
{
    int rank = 0, p = 1;
    if (bench_mpi_world("allreduce", &rank, &p))
        return 1;
    parlm_comm *comm = NULL;
    parlm_comm_config cc;
    if (cli_comm_env("allreduce", &cc))
        return 1;
    if (parlm_comm_world(&comm, &cc) != PARLM_OK) {
        fprintf(stderr, "allreduce: %s\n", parlm_last_error());
        return 1;
    }
    const int64_t max_bytes = ctx->quick ? (INT64_C(16) << 20) : (INT64_C(256) << 20);
    /* zeros: sums stay finite however often a buffer is reduced in place */
    float *buf = parlm_alloc((size_t)(max_bytes / 4), sizeof(float));
    if (!buf) {
        fprintf(stderr, "allreduce: cannot allocate %lld bytes\n", (long long)max_bytes);
        parlm_comm_free(comm);
        return 1;
    }
    if (rank == 0) {
        char title[160];
        snprintf(title, sizeof title,
                 "allreduce: f32 sum, %d ranks on %d node(s) (thr = ranks; GB/s = bus bandwidth; "
                 "ratio = speed-up over MPI_Allreduce)",
                 p, parlm_comm_nodes(comm));
        bench_section(ctx, title);
    }
    /* the zero-copy path: the same buffer size from parlm_comm_alloc_shared */
    float *shared = NULL;
    if (parlm_comm_alloc_shared(comm, max_bytes / 4, &shared) != PARLM_OK) {
        fprintf(stderr, "allreduce: %s\n", parlm_last_error());
        parlm_free(buf);
        parlm_comm_free(comm);
        return 1;
    }
    const struct {
        const char *name;
        unsigned flags;
        int64_t max_bytes; /* latency algorithms stop early */
        int shared;        /* on the parlm_comm_alloc_shared buffer */
    } impls[] = {
        {"mpi", ~0u, INT64_MAX, 0},
        {"parlm-ring", PARLM_ALGO_RING, INT64_MAX, 0},
        {"parlm-shm", PARLM_ALGO_SHM, INT64_MAX, 0},
        {"parlm-shm-shared", PARLM_ALGO_SHM, INT64_MAX, 1},
        {"parlm-rd", PARLM_ALGO_RD, INT64_C(1) << 20, 0},
        {"parlm-auto", PARLM_ALGO_AUTO, INT64_MAX, 0},
        {"parlm-ring-bf16", PARLM_ALGO_RING | PARLM_WIRE_BF16, INT64_MAX, 0},
    };
    int rc = 0;
    for (int64_t bytes = 4096; bytes <= max_bytes && !rc; bytes *= 4) {
        char shape[32];
        size_name(shape, sizeof shape, bytes);
        double base = 0;
        for (size_t i = 0; i < sizeof impls / sizeof impls[0]; i++) {
            if (bytes > impls[i].max_bytes)
                continue;
            ar_case c = {comm, impls[i].shared ? shared : buf, bytes / 4, impls[i].flags, 0};
            double sec = time_case(&c, ctx->min_time);
            int failed = 0;
            MPI_Allreduce(&c.failed, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
            if (failed) {
                rc = 1;
                break;
            }
            if (impls[i].flags == ~0u)
                base = sec;
            bench_row r = {.bench = "allreduce", .impl = impls[i].name, .shape = shape,
                           .threads = p, .seconds = sec,
                           .gbs = 2.0 * (p - 1) / p * (double)bytes / sec * 1e-9,
                           .ratio = impls[i].flags == ~0u ? 0 : base / sec,
                           .baseline = "MPI_Allreduce"};
            if (rank == 0)
                bench_report(ctx, &r);
        }
    }
    parlm_comm_free_shared(comm, shared);
    parlm_free(buf);
    parlm_comm_free(comm);
    return rc;
}
#endif /* PARLM_HAVE_MPI */
