/* bench/mp.c — model-parallel training steps under mpirun: every (dp, tp, pp) layout that
 * fits the ranks trains GPT-2 124M on the same global batch, against two baselines in the
 * same run: one process with all the ranks' threads on the whole batch (rank 0 alone, the
 * others asleep: the speed model parallelism has to match), and the same work with no
 * communication at all (each rank a full model on its 1/N of the batch, all at once, so
 * the machine is as loaded). Per layout: step time (slowest rank, best step), its split
 * into compute / waiting / tied-embedding and dp exchanges / update, the pipeline bubble
 * measured against (pp-1)/(M+pp-1), and memory per rank. --trace FILE writes the best step
 * of every layout as a Chrome trace: one process per rank, compute and transfer lanes,
 * forwards F<i> and backwards B<i> of each micro-batch. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "../apps/cli.h"
#include "bench.h"
#include "parlm.h"

#ifndef PARLM_HAVE_MPI
int bench_mp(bench_ctx *ctx)
{
    (void)ctx;
    fprintf(stderr, "parlm-bench: mp needs MPI; this parlm was configured --without-mpi\n");
    return 1;
}
#else
#include <errno.h>
#include <mpi.h>
#include <omp.h>
#include <string.h>

#define MAX_LAYOUTS 16

enum { MP_ONE_PROCESS, MP_NO_COMM, MP_GRID };

typedef struct mp_layout {
    int dp, tp, pp, M, B;
    parlm_pp_schedule sched;
    int kind;   /* MP_ONE_PROCESS, MP_NO_COMM (the baselines) or MP_GRID */
    char name[48];
} mp_layout;

/* one trace span; fixed size so that ranks send them to rank 0 as bytes */
typedef struct mp_ev {
    double start, end;
    int rank, lane, layout;
    char name[24];
} mp_ev;

typedef struct mp_result {
    double step, compute, wait, tied, dp, update, bubble; /* seconds; bubble a fraction */
    double state_mb, act_mb; /* per rank, the largest */
    mp_ev *ev;               /* this rank's events of the best step */
    int nev;
} mp_result;

static int any_failed(int failed)
{
    int any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return any;
}

/* the layouts of p ranks: the baselines, then (dp, tp, pp) with tp*pp dividing p; M
 * micro-batches of B sequences per dp rank make up the global batch G */
static int layouts(int p, int G, int M, int L, mp_layout *out)
{
    int n = 0;
    out[n++] = (mp_layout){1, 1, 1, 1, G, PARLM_PP_GPIPE, MP_ONE_PROCESS, "1 process"};
    out[n++] = (mp_layout){p, 1, 1, 1, G / p, PARLM_PP_GPIPE, MP_NO_COMM, "no-comm"};
    for (int pp = 1; pp <= p; pp++)
        for (int tp = 1; tp * pp <= p; tp++) {
            if (p % (tp * pp) || pp > L)
                continue;
            int dp = p / (tp * pp);
            for (int s = 0; s < (pp > 1 ? 2 : 1) && n < MAX_LAYOUTS; s++) {
                mp_layout l = {dp, tp, pp, pp > 1 ? M : 1, 0, s ? PARLM_PP_1F1B : PARLM_PP_GPIPE,
                               MP_GRID, ""};
                if (G % (dp * l.M) || l.M < pp)
                    continue;
                l.B = G / (dp * l.M);
                snprintf(l.name, sizeof l.name, "dp%d tp%d pp%d%s", dp, tp, pp,
                         pp > 1 ? (s ? " 1f1b" : " gpipe") : "");
                out[n++] = l;
            }
        }
    return n;
}

/* --layouts LIST: keeps ls[0] (the baseline every ratio is against) and the layouts whose
 * name contains one of LIST's comma-separated words; a word that names none is an error.
 * Returns the new count, or -1 after saying why. */
static int select_layouts(const char *list, mp_layout *ls, int n, int say)
{
    char words[256];
    if (!list)
        return n;
    if (snprintf(words, sizeof words, "%s", list) >= (int)sizeof words) {
        if (say)
            fprintf(stderr, "mp: --layouts '%s' is too long\n", list);
        return -1;
    }
    int keep[MAX_LAYOUTS] = {1}, bad = 0;
    for (char *save = NULL, *w = strtok_r(words, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        int hit = 0;
        for (int i = 1; i < n; i++)
            if (strstr(ls[i].name, w))
                keep[i] = hit = 1;
        if (!hit && say) {
            fprintf(stderr, "mp: --layouts: '%s' names no layout of these ranks; they are:", w);
            for (int i = 1; i < n; i++)
                fprintf(stderr, "%s '%s'", i > 1 ? "," : "", ls[i].name);
            fprintf(stderr, "\n");
        }
        bad |= !hit;
    }
    if (bad)
        return -1;
    int m = 0;
    for (int i = 0; i < n; i++)
        if (keep[i])
            ls[m++] = ls[i];
    return m;
}

/* the baseline's step: a full model, one micro-batch of B, no communication; *compute =
 * forward + backward */
static parlm_status nocomm_step(parlm_gpt *m, const int32_t *x, const int32_t *y, double *compute)
{
    static const parlm_adamw_cfg opt = {1e-4f, 0.9f, 0.95f, 1e-8f, 0.0f};
    float loss, norm;
    parlm_status st = parlm_gpt_zero_grad(m);
    double t0 = bench_now();
    if (st == PARLM_OK)
        st = parlm_gpt_forward(m, x, y, &loss);
    if (st == PARLM_OK)
        st = parlm_gpt_backward(m, 1.0f);
    *compute = bench_now() - t0;
    if (st == PARLM_OK)
        st = parlm_gpt_optimizer_step(m, &opt, 1.0f, &norm);
    return st;
}

static void keep_events(const parlm_pp *pp, int rank, int layout, double t0, mp_result *r)
{
    const parlm_pp_event *ev;
    int n = parlm_pp_get_events(pp, &ev);
    mp_ev *k = realloc(r->ev, (size_t)(n ? n : 1) * sizeof *k);
    if (!k)
        return;
    r->ev = k;
    r->nev = n;
    for (int i = 0; i < n; i++) {
        k[i] = (mp_ev){ev[i].start - t0, ev[i].end - t0, rank, ev[i].lane, layout, ""};
        if (!strcmp(ev[i].name, "forward") || !strcmp(ev[i].name, "backward"))
            snprintf(k[i].name, sizeof k[i].name, "%c%d", ev[i].name[0] == 'f' ? 'F' : 'B',
                     ev[i].mb);
        else if (ev[i].mb >= 0)
            snprintf(k[i].name, sizeof k[i].name, "%s %d", ev[i].name, ev[i].mb);
        else
            snprintf(k[i].name, sizeof k[i].name, "%s", ev[i].name);
    }
}

/* Runs layout l: a warm-up step, then timed steps (each after a barrier, as long as its
 * slowest rank) until min_time; r keeps the best so far (r->step starts huge). Returns 1
 * on every rank on failure. */
static int run_layout(const bench_ctx *ctx, parlm_comm *world, const parlm_gpt_config *cfg,
                      const mp_layout *l, int li, int T, mp_result *r)
{
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    parlm_grid *g = NULL;
    parlm_gpt *m = NULL;
    parlm_pp *pp = NULL;
    parlm_gpt_tp_comm tc;
    parlm_status st = PARLM_OK;
    int M = l->M, B = l->B, d = rank / (l->tp * l->pp);
    int one = l->kind == MP_ONE_PROCESS, grid = l->kind == MP_GRID;
    int local_rank, local_size, nt;
    parlm_node_rank_env(&local_rank, &local_size);
    if (one && rank != 0) {
        /* the other ranks sleep while rank 0 runs on the whole node */
    } else if (!grid) {
        st = parlm_gpt_create(&m, cfg, 1);
        if (st == PARLM_OK)
            st = parlm_gpt_setup(m, B, T, 1);
    } else {
        parlm_grid_config gc = {l->tp, l->pp, M, l->sched, T, 0};
        st = parlm_grid_create(&g, world, cfg, &gc);
        parlm_gpt_shard sh = parlm_grid_shard(g);
        if (st == PARLM_OK)
            st = parlm_gpt_create_shard(&m, cfg, &sh, 1);
        if (st == PARLM_OK && l->tp > 1 &&
            (st = parlm_tp_comm_init(&tc, parlm_grid_comm(g, PARLM_GRID_TP))) == PARLM_OK)
            st = parlm_gpt_set_tp_comm(m, &tc);
    }
    if (st != PARLM_OK)
        fprintf(stderr, "mp: rank %d, %s: %s\n", rank, l->name, parlm_last_error());
    if (any_failed(st != PARLM_OK)) {
        parlm_gpt_free(m);
        parlm_grid_free(g);
        return 1;
    }
    if (grid && parlm_pp_create(&pp, m, g, B, T, 0) != PARLM_OK) {
        fprintf(stderr, "mp: rank %d, %s: %s\n", rank, l->name, parlm_last_error());
        parlm_gpt_free(m);
        parlm_grid_free(g);
        return 1;
    }
    int64_t n = (int64_t)M * B * T;
    int32_t *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    int failed = !x || !y || (m == NULL && !(one && rank != 0));
    if (!failed) {
        bench_random_tokens(x, n, cfg->vocab, 777 + 2 * (uint64_t)(grid ? d : rank));
        bench_random_tokens(y, n, cfg->vocab, 778 + 2 * (uint64_t)(grid ? d : rank));
    }
    static const parlm_adamw_cfg opt = {1e-4f, 0.9f, 0.95f, 1e-8f, 0.0f};
    double spent = 0;
    for (int it = 0; !any_failed(failed) && (it < (ctx->quick ? 2 : 4) ||
                                              (spent < ctx->min_time && it < 50));
         it++) {
        if (one)
            bench_sleepy_barrier();
        else
            MPI_Barrier(MPI_COMM_WORLD);
        double t0 = bench_now();
        parlm_status s = PARLM_OK;
        float loss, norm;
        double compute = 0;
        if (one && rank == 0) {
            parlm_place_threads(0, 1, local_size * ctx->max_threads, 1, &nt, NULL, 0);
            t0 = bench_now();
            s = nocomm_step(m, x, y, &compute);
        } else if (one) {
            /* asleep */
        } else if (!grid) {
            s = nocomm_step(m, x, y, &compute);
        } else {
            s = parlm_pp_run(pp, x, y, &loss);
            if (s == PARLM_OK)
                s = parlm_pp_update(pp, &opt, 1.0f, &norm);
        }
        double t = bench_now() - t0, slowest = 0;
        if (one) {
            if (rank == 0)
                parlm_place_threads(local_rank, local_size, ctx->max_threads, 1, &nt, NULL, 0);
            bench_sleepy_barrier();
        }
        if (s != PARLM_OK) {
            fprintf(stderr, "mp: rank %d, %s: %s\n", rank, l->name, parlm_last_error());
            failed = 1;
        }
        MPI_Allreduce(&t, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (it == 0) /* warm-up: first touch of slots and optimizer state */
            continue;
        spent += slowest;
        if (slowest >= r->step)
            continue;
        r->step = slowest;
        double mine[6] = {0}, most[6];
        if (pp) {
            parlm_pp_stats ps = parlm_pp_get_stats(pp);
            mine[0] = ps.compute, mine[1] = ps.wait, mine[2] = ps.tied, mine[3] = ps.dp;
            mine[4] = ps.update;
            keep_events(pp, rank, li, t0, r);
        } else {
            mine[0] = compute, mine[4] = t - compute;
        }
        mine[5] = pp ? parlm_pp_get_stats(pp).bubble : 0;
        MPI_Allreduce(mine, most, 5, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        double bsum = 0;
        MPI_Allreduce(&mine[5], &bsum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        r->compute = most[0], r->wait = most[1], r->tied = most[2], r->dp = most[3];
        r->update = most[4];
        int p;
        MPI_Comm_size(MPI_COMM_WORLD, &p);
        r->bubble = bsum / p;
    }
    /* memory: parameters, gradients and AdamW's two moments; the activation arena */
    double mem[2] = {m ? (double)parlm_gpt_num_params(m) * 16 / 1e6 : 0,
                     (double)(pp ? parlm_pp_get_stats(pp).activation_bytes
                              : m ? parlm_gpt_activation_bytes(m) : 0) / 1e6},
           most_mem[2];
    MPI_Allreduce(mem, most_mem, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    r->state_mb = most_mem[0], r->act_mb = most_mem[1];
    failed = any_failed(failed);
    free(x);
    free(y);
    parlm_pp_free(pp);
    parlm_gpt_free(m);
    parlm_grid_free(g);
    return failed;
}

/* rank 0 collects every rank's events of every layout and writes the Chrome trace;
 * layouts are laid one after another */
static int write_trace(const char *path, mp_result *res, const mp_layout *ls, int nl, int p)
{
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    FILE *f = NULL;
    int bad = 0;
    if (rank == 0) {
        f = fopen(path, "w");
        if (!f) {
            fprintf(stderr, "mp: cannot write the trace '%s': %s\n", path, strerror(errno));
            bad = 1;
        }
    }
    MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (bad)
        return 1;
    if (rank == 0) {
        fprintf(f, "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n");
        for (int r = 0; r < p; r++) {
            fprintf(f, "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"args\": "
                       "{\"name\": \"rank %d\"}},\n", r + 1, r);
            fprintf(f, "{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": 1, "
                       "\"args\": {\"name\": \"compute\"}},\n", r + 1);
            fprintf(f, "{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": 2, "
                       "\"args\": {\"name\": \"transfers\"}},\n", r + 1);
        }
    }
    double offset = 0;
    int first = 1;
    for (int li = 0; li < nl; li++) {
        if (ls[li].kind != MP_GRID)
            continue;
        int n = res[li].nev, *counts = NULL;
        if (rank == 0)
            counts = calloc((size_t)p, sizeof *counts);
        MPI_Gather(&n, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
        for (int r = 0; r < p; r++) {
            /* one rank at a time: rank 0 writes its own, the others send theirs */
            int cnt = rank == 0 ? counts[r] : 0;
            mp_ev *ev = NULL;
            if (r == 0 && rank == 0) {
                ev = res[li].ev;
            } else if (rank == 0) {
                ev = malloc((size_t)(cnt ? cnt : 1) * sizeof *ev);
                MPI_Recv(ev, cnt * (int)sizeof *ev, MPI_BYTE, r, li, MPI_COMM_WORLD,
                         MPI_STATUS_IGNORE);
            } else if (rank == r) {
                MPI_Send(res[li].ev, n * (int)sizeof(mp_ev), MPI_BYTE, 0, li, MPI_COMM_WORLD);
            }
            for (int i = 0; rank == 0 && ev && i < cnt; i++) {
                double ts = (offset + ev[i].start) * 1e6, dur = (ev[i].end - ev[i].start) * 1e6;
                fprintf(f, "%s{\"name\": \"%s\", \"cat\": \"%s\", \"ph\": \"X\", \"pid\": %d, "
                           "\"tid\": %d, \"ts\": %.3f, \"dur\": %.3f}",
                        first ? "" : ",\n", ev[i].name, ls[li].name, r + 1, ev[i].lane + 1, ts,
                        dur > 0 ? dur : 0);
                first = 0;
            }
            if (rank == 0 && r != 0)
                free(ev);
        }
        free(counts);
        offset += 1.2 * res[li].step;
    }
    if (rank == 0) {
        fprintf(f, "\n]}\n");
        bad = ferror(f) | (fclose(f) != 0);
        if (bad)
            fprintf(stderr, "mp: error writing the trace '%s'\n", path);
    }
    MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return bad;
}

int bench_mp(bench_ctx *ctx)
{
    int rank = 0, p = 1;
    if (bench_mpi_world("mp", &rank, &p))
        return 1;
    omp_set_num_threads(ctx->max_threads);
    const char *preset = ctx->quick ? "small" : "d12";
    const int T = ctx->seq ? ctx->seq : 64, M = ctx->quick ? 4 : 8, G = (ctx->quick ? 4 : 8) * p;
    parlm_gpt_config cfg = {.max_seq = ctx->quick ? 128 : 1024, .vocab = ctx->quick ? 256 : 50257};
    if (T > cfg.max_seq) {
        if (rank == 0)
            fprintf(stderr, "mp: --seq %d is longer than the model's %d positions\n", T,
                    cfg.max_seq);
        return 1;
    }
    parlm_comm *world = NULL;
    parlm_comm_config cc;
    if (cli_comm_env("mp", &cc))
        return 1;
    if (parlm_gpt_preset(preset, &cfg) != PARLM_OK || parlm_comm_world(&world, &cc) != PARLM_OK) {
        fprintf(stderr, "mp: rank %d: %s\n", rank, parlm_last_error());
        parlm_comm_free(world);
        return 1;
    }
    mp_layout ls[MAX_LAYOUTS];
    int nl = select_layouts(ctx->layouts, ls, layouts(p, G, M, cfg.n_layer, ls), rank == 0);
    if (nl < 0) { /* the same on every rank: the list and the layouts are */
        parlm_comm_free(world);
        return 1;
    }
    char title[512], shape[64];
    snprintf(title, sizeof title,
             "mp: model-parallel training step, %s, global batch %d x %d tokens, %d ranks "
             "(thr = threads per rank; ratio = the 1-process step / this step; compute = slowest "
             "rank's forward + backward; comm = waiting + tied-embedding sum + dp all-reduce; "
             "opt = norm all-reduce + AdamW; tp's collectives are inside compute)",
             preset, G, T, p);
    if (rank == 0)
        bench_section(ctx, title);
    mp_result res[MAX_LAYOUTS];
    memset(res, 0, sizeof res);
    int failed = 0;
    double flops = 0;
    {
        parlm_gpt *full = NULL;
        if (parlm_gpt_create(&full, &cfg, 1) == PARLM_OK)
            flops = bench_step_flops(full, G, T);
        parlm_gpt_free(full);
    }
    /* rounds of every layout in turn, so that a slow spell of a shared machine hits all of
     * them alike; the best step of each is kept */
    for (int li = 0; li < nl; li++)
        res[li].step = 1e30;
    for (int round = 0; round < (ctx->quick ? 1 : 2) && !failed; round++)
        for (int li = 0; li < nl && !failed; li++)
            failed = run_layout(ctx, world, &cfg, &ls[li], li, T, &res[li]);
    for (int li = 0; li < nl && !failed; li++) {
        mp_result *r = &res[li];
        snprintf(shape, sizeof shape, "M=%d B=%d T=%d", ls[li].M, ls[li].B, T);
        int local_size;
        parlm_node_rank_env(NULL, &local_size);
        bench_row row = {.bench = "mp", .impl = ls[li].name, .shape = shape,
                         .threads = ctx->max_threads *
                                    (ls[li].kind == MP_ONE_PROCESS ? local_size : 1),
                         .seconds = r->step,
                         .gflops = flops / r->step * 1e-9, .compute = r->compute,
                         .comm = r->wait + r->tied + r->dp, .opt = r->update};
        if (li > 0)
            row.ratio = res[0].step / r->step, row.baseline = "1 process, all threads";
        if (rank == 0)
            bench_report(ctx, &row);
        if (rank == 0 && !ctx->json && ls[li].kind == MP_GRID) {
            double formula = (double)(ls[li].pp - 1) / (ls[li].M + ls[li].pp - 1);
            printf("mp: %-18s %.2fx no-comm; bubble %.1f%% (formula (pp-1)/(M+pp-1) %.1f%%); "
                   "wait %.1f ms, tied wte %.1f ms, dp %.1f ms; per rank: params+grads+adam "
                   "%.0f MB, activations %.0f MB\n",
                   ls[li].name, res[1].step / r->step, 100 * r->bubble, 100 * formula,
                   r->wait * 1e3, r->tied * 1e3, r->dp * 1e3, r->state_mb, r->act_mb);
        }
    }
    if (!failed && ctx->trace) {
        failed = write_trace(ctx->trace, res, ls, nl, p);
        if (!failed && rank == 0 && !ctx->json)
            printf("mp: wrote %s (open it in https://ui.perfetto.dev or chrome://tracing)\n",
                   ctx->trace);
    }
    for (int li = 0; li < nl; li++)
        free(res[li].ev);
    parlm_comm_free(world);
    return failed;
}
#endif /* PARLM_HAVE_MPI */
