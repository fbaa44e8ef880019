/* bench/dp.c — a data-parallel training step of GPT-2 124M under mpirun: parlm_dp in
 * sync, overlap and ZeRO-1 mode against the same step without communication, which
 * every rank runs at the same time (so the machine is as loaded as in the other modes).
 * The headline is overlap's efficiency: the share of sync's all-reduce time that overlap
 * hides behind backward. Timing as in bench/allreduce.c: each step starts after a
 * barrier and counts as long as its slowest rank took; the best step is kept and its
 * split along the critical path reported (see time_mode). --trace FILE writes that step
 * of every mode, one after another, as one Chrome trace (processes = ranks, threads =
 * compute and communication lanes), for Perfetto or chrome://tracing. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "../apps/cli.h"
#include "bench.h"
#include "parlm.h"

#ifndef PARLM_HAVE_MPI
/* a --without-mpi build: the benchmark says so instead of running */
int bench_dp(bench_ctx *ctx)
{
    (void)ctx;
    fprintf(stderr, "parlm-bench: dp needs MPI; this parlm was configured --without-mpi\n");
    return 1;
}
#else
#include <errno.h>
#include <mpi.h>
#include <omp.h>
#include <string.h>

/* ---- trace events ------------------------------------------------------------------ */

enum { LANE_STEP = 1, LANE_COMPUTE = 2, LANE_COMM = 3 }; /* the trace's thread ids */

/* One span, in seconds from the start of its step on its rank. Fixed size, so a rank's
 * events travel to rank 0 as plain bytes. */
typedef struct trace_ev {
    double start, end;
    int64_t bytes; /* collectives: bytes of the buffer */
    int lane, rank, mode;
    char name[40];
} trace_ev;

typedef struct trace_buf {
    trace_ev *ev;
    int n, cap;
    int oom; /* an event was dropped for want of memory */
} trace_buf;

static void trace_add(trace_buf *t, const trace_ev *e)
{
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 64;
        trace_ev *ev = realloc(t->ev, (size_t)cap * sizeof *ev);
        if (!ev) {
            t->oom = 1;
            return;
        }
        t->ev = ev, t->cap = cap;
    }
    t->ev[t->n++] = *e;
}

static void trace_span(trace_buf *t, int lane, const char *name, double start, double end,
                       int64_t bytes)
{
    trace_ev e = {.start = start, .end = end, .bytes = bytes, .lane = lane};
    snprintf(e.name, sizeof e.name, "%s", name);
    trace_add(t, &e);
}

/* ---- one step ---------------------------------------------------------------------- */

/* what one step took on this rank, seconds; across ranks the first T_MAXED are taken at
 * their maximum, the rest at their minimum (see time_mode) */
enum { T_STEP, T_COMPUTE, T_OPT, T_PROGRESS, T_MAXED, T_COMM = T_MAXED, T_N };

typedef struct dp_run {
    parlm_gpt *m;
    parlm_dp *dp; /* NULL: the baseline without communication */
    const int32_t *x, *y;
    parlm_adamw_cfg opt;
    const char *mode;
    trace_buf *events; /* NULL, or this step's events are written here */
} dp_run;

/* this step's events: the benchmark's own spans, and parlm_dp's timeline */
static void record_events(dp_run *r, double t0, double f0, double f1, double b1, double t1)
{
    trace_buf *t = r->events;
    t->n = 0;
    trace_span(t, LANE_STEP, r->mode, 0, t1 - t0, 0);
    trace_span(t, LANE_COMPUTE, "zero_grad", 0, f0 - t0, 0);
    trace_span(t, LANE_COMPUTE, "forward", f0 - t0, f1 - t0, 0);
    if (!r->dp) {
        trace_span(t, LANE_COMPUTE, "backward", f1 - t0, b1 - t0, 0);
        trace_span(t, LANE_COMPUTE, "optimizer", b1 - t0, t1 - t0, 0);
        return;
    }
    const parlm_dp_event *ev = NULL;
    int n = parlm_dp_get_events(r->dp, &ev);
    for (int i = 0; i < n; i++) {
        char name[40];
        if (ev[i].bytes > 0)
            snprintf(name, sizeof name, "%s %.1f MB", ev[i].name, (double)ev[i].bytes / (1 << 20));
        else
            snprintf(name, sizeof name, "%s", ev[i].name);
        trace_span(t, ev[i].lane == PARLM_DP_LANE_COMM ? LANE_COMM : LANE_COMPUTE, name,
                   ev[i].start - t0, ev[i].end - t0, ev[i].bytes);
    }
}

/* zero_grad, forward, backward, exchange, clip to norm 1, AdamW; t[] = its split */
static parlm_status run_step(dp_run *r, double t[T_N])
{
    float loss = 0, norm = 0;
    double t0 = bench_now();
    parlm_status st = parlm_gpt_zero_grad(r->m);
    double f0 = bench_now();
    if (st == PARLM_OK)
        st = parlm_gpt_forward(r->m, r->x, r->y, &loss);
    double f1 = bench_now(), b1 = f1;
    if (r->dp) {
        if (st == PARLM_OK)
            st = parlm_dp_backward(r->dp, 1.0f, 1);
        if (st == PARLM_OK)
            st = parlm_dp_update(r->dp, &r->opt, 1.0f, NULL);
    } else {
        /* the same work as parlm_dp_update's minus the exchange: norm, clip, AdamW */
        if (st == PARLM_OK)
            st = parlm_gpt_backward(r->m, 1.0f);
        b1 = bench_now();
        if (st == PARLM_OK)
            st = parlm_gpt_grad_norm(r->m, &norm);
        if (st == PARLM_OK)
            st = parlm_gpt_update(r->m, &r->opt, norm > 1.0f ? 1.0f / norm : 1.0f);
    }
    double t1 = bench_now();
    t[T_STEP] = t1 - t0;
    if (r->dp) {
        parlm_dp_stats s = parlm_dp_get_stats(r->dp);
        t[T_COMPUTE] = f1 - f0 + s.backward, t[T_OPT] = s.optimizer;
        t[T_COMM] = s.comm_wait, t[T_PROGRESS] = s.progress;
    } else {
        t[T_COMPUTE] = b1 - f0, t[T_OPT] = t1 - b1, t[T_COMM] = t[T_PROGRESS] = 0;
    }
    if (st == PARLM_OK && r->events)
        record_events(r, t0, f0, f1, b1, t1);
    return st;
}

/* One step on every rank, started together; *slowest = the slowest rank's time. Returns
 * 1 on every rank if any failed. */
static int agreed_step(dp_run *r, double t[T_N], double *slowest)
{
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Barrier(MPI_COMM_WORLD);
    parlm_status st = run_step(r, t);
    if (st != PARLM_OK)
        fprintf(stderr, "dp: rank %d, %s step: %s\n", rank, r->mode, parlm_last_error());
    else if (r->events && r->events->oom)
        fprintf(stderr, "dp: rank %d: out of memory for %d trace events\n", rank, r->events->cap);
    double mine[2] = {t[T_STEP], st != PARLM_OK || (r->events && r->events->oom)}, worst[2];
    MPI_Allreduce(mine, worst, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    *slowest = worst[0];
    return worst[1] > 0;
}

/* One timed step of a mode after a warm-up step (page faults in fresh buffers: ZeRO-1's
 * optimizer block, the gathered embedding rows). If it is the mode's best so far, best[]
 * becomes its split along the critical path: compute and optimizer of the slowest rank
 * in each, communication as waited for by the rank that arrived last. Every other rank
 * waits longer by how much earlier it finished backward: load imbalance, not
 * communication (a mean over ranks would count it, and sync would look worse than it
 * is). With r->events, *kept = this rank's events of that step. Returns 1 if a rank
 * failed; *slowest = the timed step's slowest rank. */
static int time_step(dp_run *r, double best[T_N], trace_buf *kept, double *slowest)
{
    double t[T_N];
    if (agreed_step(r, t, slowest) || agreed_step(r, t, slowest))
        return 1;
    if (*slowest >= best[T_STEP])
        return 0;
    /* every rank sees the same slowest time, so all take part in these reductions */
    MPI_Allreduce(t, best, T_MAXED, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(t + T_MAXED, best + T_MAXED, T_N - T_MAXED, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
    best[T_STEP] = *slowest;
    if (r->events) { /* keep this step's events; the next step writes into the other buffer */
        trace_buf tmp = *kept;
        *kept = *r->events, *r->events = tmp;
    }
    return 0;
}

/* ---- the trace file ---------------------------------------------------------------- */

/* Rank 0 appends every rank's kept events of mode `mode` to *all. Collective; returns 1
 * on every rank if rank 0 ran out of memory. */
static int trace_gather(trace_buf *kept, int mode, trace_buf *all)
{
    int rank, p, n = kept->n, ok = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &p);
    for (int i = 0; i < n; i++)
        kept->ev[i].rank = rank, kept->ev[i].mode = mode;
    int *counts = NULL, *displs = NULL, total = 0;
    if (rank == 0) {
        counts = malloc((size_t)p * sizeof *counts);
        displs = malloc((size_t)p * sizeof *displs);
        ok = counts && displs;
    }
    MPI_Gather(&n, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (rank == 0 && ok) {
        for (int r = 0; r < p; r++) {
            displs[r] = (int)((all->n + total) * sizeof(trace_ev)); /* bytes, as MPI_BYTE counts */
            total += counts[r];
            counts[r] *= (int)sizeof(trace_ev);
        }
        if (all->n + total > all->cap) {
            trace_ev *ev = realloc(all->ev, (size_t)(all->n + total) * sizeof *ev);
            ok = ev != NULL;
            if (ok)
                all->ev = ev, all->cap = all->n + total;
        }
        if (!ok)
            fprintf(stderr, "dp: out of memory for %d trace events\n", all->n + total);
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD); /* no rank waits in a gather that won't come */
    if (ok) {
        MPI_Gatherv(kept->ev, n * (int)sizeof(trace_ev), MPI_BYTE,
                    rank == 0 ? (void *)all->ev : NULL, counts, displs, MPI_BYTE, 0,
                    MPI_COMM_WORLD);
        if (rank == 0)
            all->n += total;
    }
    free(counts);
    free(displs);
    return !ok;
}

/* Chrome's Trace Event Format: complete events ("ph": "X") with ts and dur in
 * microseconds; pid = rank + 1 and tid = lane, named by metadata events ("ph": "M").
 * The modes' steps are laid one after another: mode i starts after mode i-1's slowest
 * step and a gap of a tenth of it. */
static int trace_write(const char *path, const trace_buf *all, int p, const char *const *modes,
                       const double *step_len, int nmodes, const char *title)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "dp: cannot write the trace '%s': %s\n", path, strerror(errno));
        return 1;
    }
    static const char *const lanes[] = {"", "step", "compute", "communication"};
    fprintf(f, "{\"displayTimeUnit\": \"ms\", \"otherData\": {\"title\": \"%s\"},\n"
               "\"traceEvents\": [\n", title);
    for (int r = 0; r < p; r++) {
        fprintf(f, "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": %d, "
                   "\"args\": {\"name\": \"rank %d\"}},\n", r + 1, LANE_STEP, r);
        fprintf(f, "{\"name\": \"process_sort_index\", \"ph\": \"M\", \"pid\": %d, \"tid\": %d, "
                   "\"args\": {\"sort_index\": %d}},\n", r + 1, LANE_STEP, r);
        for (int l = LANE_STEP; l <= LANE_COMM; l++) {
            fprintf(f, "{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": %d, "
                       "\"args\": {\"name\": \"%s\"}},\n", r + 1, l, lanes[l]);
            fprintf(f, "{\"name\": \"thread_sort_index\", \"ph\": \"M\", \"pid\": %d, \"tid\": %d, "
                       "\"args\": {\"sort_index\": %d}},\n", r + 1, l, l);
        }
    }
    double offset[8] = {0};
    for (int i = 1; i < nmodes && i < 8; i++)
        offset[i] = offset[i - 1] + 1.1 * step_len[i - 1];
    for (int i = 0; i < all->n; i++) {
        const trace_ev *e = &all->ev[i];
        double ts = (offset[e->mode] + e->start) * 1e6, dur = (e->end - e->start) * 1e6;
        /* names come from parlm and this file: no quotes or backslashes to escape */
        fprintf(f, "%s{\"name\": \"%s\", \"cat\": \"%s\", \"ph\": \"X\", \"pid\": %d, \"tid\": %d, "
                   "\"ts\": %.3f, \"dur\": %.3f, \"args\": {\"mode\": \"%s\"",
                i ? ",\n" : "", e->name, modes[e->mode], e->rank + 1, e->lane, ts,
                dur > 0 ? dur : 0, modes[e->mode]);
        if (e->bytes > 0)
            fprintf(f, ", \"bytes\": %lld", (long long)e->bytes);
        if (e->lane == LANE_STEP)
            fprintf(f, ", \"slowest_rank_ms\": %.3f", step_len[e->mode] * 1e3);
        fprintf(f, "}}");
    }
    fprintf(f, "\n]}\n");
    int bad = ferror(f);
    if (fclose(f) || bad) {
        fprintf(stderr, "dp: error writing the trace '%s': %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

/* ---- the benchmark ----------------------------------------------------------------- */

/* 1 on every rank if any rank has failed */
static int any_failed(int failed)
{
    int any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return any;
}

enum { M_NOCOMM, M_SYNC, M_OVERLAP, M_ZERO1, M_N };

/* rank 0's lines on overlap: how much of sync's all-reduce time it hid, strictly (the
 * communication work backward did at its progress points counts as not hidden: on a CPU
 * that work takes the compute core) and as waiting alone; and the step-time view */
static void summary(const bench_ctx *ctx, double res[M_N][T_N], double hidden, double hidden_step)
{
    if (ctx->json)
        return;
    double sync = res[M_SYNC][T_STEP], ov = res[M_OVERLAP][T_STEP], nc = res[M_NOCOMM][T_STEP];
    double exposed = res[M_OVERLAP][T_COMM], prog = res[M_OVERLAP][T_PROGRESS];
    double base = res[M_SYNC][T_COMM];
    printf("dp: overlap hides %.1f%% of sync's all-reduce time %.1f ms: it waits %.1f ms after "
           "backward and spends %.1f ms inside backward progressing buckets (waiting alone: "
           "%.1f%% hidden)\n",
           hidden, base * 1e3, exposed * 1e3, prog * 1e3,
           base > 0 ? 100 * (1 - exposed / base) : 0);
    printf("dp: step-time view %.1f%% = (sync %.1f - overlap %.1f) / (sync %.1f - no-comm %.1f ms) "
           "(noisy: the difference of whole steps)\n",
           hidden_step, sync * 1e3, ov * 1e3, sync * 1e3, nc * 1e3);
}

int bench_dp(bench_ctx *ctx)
{
    int rank = 0, p = 1;
    if (bench_mpi_world("dp", &rank, &p))
        return 1;
    omp_set_num_threads(ctx->max_threads);
    const char *preset = ctx->quick ? "small" : "d12";
    const int B = 4, T = 64;
    parlm_gpt_config cfg = {.max_seq = ctx->quick ? 128 : 1024, .vocab = ctx->quick ? 256 : 50257};
    parlm_comm *comm = NULL;
    parlm_gpt *m = NULL;
    int32_t *x = malloc((size_t)B * T * sizeof *x), *y = malloc((size_t)B * T * sizeof *y);
    int failed = 0;
    parlm_comm_config cc;
    if (cli_comm_env("dp", &cc) || parlm_comm_world(&comm, &cc) != PARLM_OK ||
        parlm_gpt_preset(preset, &cfg) != PARLM_OK ||
        parlm_gpt_create(&m, &cfg, 1) != PARLM_OK || parlm_gpt_setup(m, B, T, 1) != PARLM_OK) {
        fprintf(stderr, "dp: rank %d: %s\n", rank, parlm_last_error());
        failed = 1;
    } else if (!x || !y) {
        fprintf(stderr, "dp: rank %d: out of memory for %d tokens\n", rank, B * T);
        failed = 1;
    }
    if (any_failed(failed)) {
        parlm_gpt_free(m);
        parlm_comm_free(comm);
        free(x);
        free(y);
        return 1;
    }
    /* each rank its own data, as in training */
    bench_random_tokens(x, (int64_t)B * T, cfg.vocab, 12345 + 2 * (uint64_t)rank);
    bench_random_tokens(y, (int64_t)B * T, cfg.vocab, 12346 + 2 * (uint64_t)rank);

    char shape[64], title[512];
    snprintf(shape, sizeof shape, "%s B=%d T=%d x%d ranks", preset, B, T, p);
    snprintf(title, sizeof title,
             "dp: data-parallel training step, %s B=%d T=%d per rank, %d ranks on %d node(s) "
             "(thr = threads per rank; GFLOP/s of all ranks; ratio = no-comm step / this step; "
             "split: compute, opt = slowest rank, comm = what the last rank to arrive waited; "
             "zero1's all-gather is in opt)",
             preset, B, T, p, parlm_comm_nodes(comm));
    if (rank == 0)
        bench_section(ctx, title);

    static const char *const names[M_N] = {"no-comm", "sync", "overlap", "zero1"};
    static const parlm_dp_mode dp_modes[M_N] = {0, PARLM_DP_SYNC, PARLM_DP_OVERLAP, PARLM_DP_ZERO1};
    double res[M_N][T_N] = {{0}}, flops = bench_step_flops(m, B, T) * p;
    double hidden = 0, hidden_step = 0;
    trace_buf scratch = {0}, kept[M_N] = {{0}}, all = {0};
    for (int i = 0; i < M_N; i++)
        res[i][T_STEP] = 1e30;
    /* Rounds of every mode in turn, so that a slow spell of a shared machine hits all
     * modes alike instead of the one that happened to be running; the best step of each
     * mode is kept. */
    double spent = 0;
    for (int round = 0; !failed && (round < (ctx->quick ? 2 : 3) || (spent < ctx->min_time && round < 100)); round++) {
        for (int i = 0; i < M_N && !failed; i++) {
            parlm_dp *dp = NULL;
            if (i != M_NOCOMM) {
                parlm_dp_config dpc = {dp_modes[i], 0, PARLM_ALGO_AUTO, 1, 0};
                if (parlm_dp_create(&dp, m, comm, &dpc) != PARLM_OK) {
                    fprintf(stderr, "dp: rank %d, %s: %s\n", rank, names[i], parlm_last_error());
                    failed = 1;
                }
                if ((failed = any_failed(failed)) != 0)
                    break;
            }
            dp_run r = {m, dp, x, y, {1e-4f, 0.9f, 0.95f, 1e-8f, 0.0f}, names[i],
                        ctx->trace ? &scratch : NULL};
            double slowest = 0;
            failed = time_step(&r, res[i], &kept[i], &slowest);
            spent += slowest;
            parlm_dp_free(dp); /* before the next mode's: overlap's gradient hook goes with it */
        }
    }
    for (int i = 0; i < M_N && !failed; i++) {
        if (ctx->trace)
            failed = trace_gather(&kept[i], i, &all);
        double *t = res[i], sec = t[T_STEP];
        bench_row row = {.bench = "dp", .impl = names[i], .shape = shape,
                         .threads = ctx->max_threads, .seconds = sec, .gflops = flops / sec * 1e-9,
                         .compute = t[T_COMPUTE], .comm = t[T_COMM],
                         .progress = t[T_PROGRESS], .opt = t[T_OPT]};
        if (i != M_NOCOMM)
            row.ratio = res[M_NOCOMM][T_STEP] / sec, row.baseline = "no-comm";
        if (i == M_OVERLAP) {
            /* as measured, even when noise makes it negative or above 100 */
            double sync = res[M_SYNC][T_STEP], gap = sync - res[M_NOCOMM][T_STEP];
            if (res[M_SYNC][T_COMM] > 0)
                hidden = 100 * (1 - (t[T_COMM] + t[T_PROGRESS]) / res[M_SYNC][T_COMM]);
            if (gap != 0)
                hidden_step = 100 * (sync - sec) / gap;
            row.hidden_pct = hidden, row.hidden_step_pct = hidden_step;
        }
        if (rank == 0 && !failed)
            bench_report(ctx, &row);
    }
    if (!failed && rank == 0)
        summary(ctx, res, hidden, hidden_step);
    if (!failed && ctx->trace) {
        int bad = 0;
        if (rank == 0) {
            double len[M_N];
            for (int i = 0; i < M_N; i++)
                len[i] = res[i][T_STEP];
            bad = trace_write(ctx->trace, &all, p, names, len, M_N, shape);
            if (!bad && !ctx->json)
                printf("dp: wrote %s: %d events, the best step of each mode (open it in "
                       "https://ui.perfetto.dev or chrome://tracing)\n", ctx->trace, all.n);
        }
        MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD); /* every rank returns the same */
        failed = bad;
    }
    free(scratch.ev);
    for (int i = 0; i < M_N; i++)
        free(kept[i].ev);
    free(all.ev);
    parlm_gpt_free(m);
    parlm_comm_free(comm);
    free(x);
    free(y);
    return failed;
}
#endif /* PARLM_HAVE_MPI */
