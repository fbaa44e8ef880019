/* apps/parlm-bench.c — parlm's microbenchmarks. Every benchmark measures its
 * baseline in the same run (FMA peak, STREAM triad, OpenBLAS sgemm, naive loops)
 * and prints ratios; absolute times on shared machines are noise, ratios are not. */
#include "config.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bench/bench.h"
#include "cli.h"
#include "parlm.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: parlm-bench [options] [BENCH ...]\n"
            "\n"
            "BENCH (default: all; the full set takes several minutes on 2 cores):\n"
            "  peak     f32 FMA throughput of 1 core and of all threads (roofline ceiling)\n"
            "  stream   STREAM-triad memory bandwidth\n"
            "  gemm     parlm sgemm and bf16 GEMM vs OpenBLAS and a naive loop,\n"
            "           square sizes and GPT-2 shapes, 1 and all threads\n"
            "  gemv     decode GEMVs (f32, bf16, q8_0, q4_0 weights, plain and repacked by 8\n"
            "           rows) vs STREAM bandwidth\n"
            "  train    a training step of GPT-2 124M (d12) and of llama-110m at B=4,T=64 and\n"
            "           B=8,T=256: ms, MFU\n"
            "  generate GPT-2 124M prefill and decode tokens/s (f32, bf16; decode on 1 and all\n"
            "           threads), and decode of a model larger than the last-level cache (d24\n"
            "           or bigger), vs the bandwidth bound\n"
            "  kernels  the non-GEMM kernels (elementwise, layernorm, softmax, attention, cross-\n"
            "           entropy, embedding, AdamW, bf16; Llama RMSNorm, RoPE, SwiGLU) on 1 thread\n"
            "           vs the scalar ones\n"
            "  all      all of the above (peak and stream run first: the others quote them)\n"
            "  allreduce  all-reduce bus bandwidth, parlm vs MPI_Allreduce, 4 KB - 256 MB;\n"
            "           not part of 'all': run it under MPI, `mpirun -np 2 parlm-bench allreduce`\n"
            "  dp       data-parallel GPT-2 124M step at B=4,T=64 per rank: no communication vs\n"
            "           parlm_dp sync, overlap and zero1; step split into compute / exposed\n"
            "           communication / optimizer, and the share of the all-reduce overlap\n"
            "           hides; not part of 'all': `mpirun -np 2 parlm-bench dp`\n"
            "  tp       tensor-parallel decode of GPT-2 124M (f32, bf16) over the ranks vs one\n"
            "           process with all their threads; `mpirun -np 2 parlm-bench tp`\n"
            "  mp       model-parallel GPT-2 124M step, every (dp,tp,pp) layout that fits the\n"
            "           ranks (pipelines with GPipe and 1F1B, M=8) on the same global batch vs\n"
            "           one process with all the ranks' threads and vs no communication:\n"
            "           compute / waiting / exchanges, measured bubble vs (pp-1)/(M+pp-1),\n"
            "           memory per rank; `mpirun -np 2 parlm-bench mp`\n"
            "  calibrate the machine profile of parlm-plan (--out FILE): f32 FMA peak, bf16 GEMM\n"
            "           path speed-up, parlm f32 GEMM on 16 GPT-2 training shapes and attention\n"
            "           (1 thread), STREAM of the node; under `mpirun -np 2` also the alpha/beta\n"
            "           of MPI point-to-point and parlm all-reduce (least squares over 8 B -\n"
            "           64 MB, fit error printed); one rank: no links, or those of --links FILE.\n"
            "           Not part of 'all'. About 30 s at the default --time\n"
            "\n"
            "options:\n"
            "  --json         print one JSON document instead of tables\n"
            "  --quick        fewer sizes and repetitions (CI smoke run)\n"
            "  --threads N    'all threads' means N (default: OMP_NUM_THREADS or all cores)\n"
            "  --time S       seconds of repetitions per measurement (default 0.3)\n"
            "  --trace FILE   dp, mp: write the best step of each mode / layout as a Chrome\n"
            "                 trace (JSON for https://ui.perfetto.dev or chrome://tracing):\n"
            "                 ranks, compute and communication lanes\n"
            "  --seq T        mp: tokens per sequence (default 64; the global batch stays\n"
            "                 8 sequences per rank, so T sets the micro-batch's rows)\n"
            "  --layouts LIST mp: only the layouts whose names contain one of these comma-\n"
            "                 separated words (e.g. '1f1b,tp2'); the 1-process baseline\n"
            "                 always runs\n"
            "  --out FILE     calibrate: write the profile (JSON, parlm/plan.h) here\n"
            "  --links FILE   calibrate on one rank: copy the links of this profile\n"
            "  -h, --help     this text\n"
            "\n"
            "environment: PARLM_ISA=scalar|avx2|avx512|neon forces a kernel set;\n"
            "PARLM_BF16_PATH=dot|widen forces the bf16 GEMM path (default: measured);\n"
            "PARLM_QLAYOUT=rows|r8 forces the quantized decode's layout (default: measured);\n"
            "OPENBLAS_CORETYPE (read by OpenBLAS) picks the baseline's kernels.\n");
}

#ifdef PARLM_HAVE_MPI
/* Tasks the launcher started (1 without one): calibrate initializes MPI only when > 1,
 * a plain run must not need mpirun. */
static int launcher_ranks(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE",
                                       "SLURM_STEP_NUM_TASKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 1)
            return atoi(v);
    }
    return 1;
}
#endif

int main(int argc, char **argv)
{
    bench_ctx ctx = {.max_threads = 0, .min_time = 0.3}; /* 0: no --threads */
    int want_peak = 0, want_stream = 0, want_gemm = 0, want_gemv = 0, want_train = 0, want_gen = 0;
    int want_kern = 0, want_allreduce = 0, want_dp = 0, want_tp = 0, want_mp = 0, threads_set = 0;
    int want_calib = 0;
    const char **names = malloc((size_t)argc * sizeof *names);
    const cli_opt table[] = {
        CLI_F("--json", &ctx.json, 0), CLI_F("--quick", &ctx.quick, 0),
        CLI_I("--threads", &ctx.max_threads, 1, 4096, 0),
        CLI_D("--time", &ctx.min_time, 1e-6, 3600, 0), CLI_S("--trace", &ctx.trace, 0),
        CLI_I("--seq", &ctx.seq, 1, 1024, 0), CLI_S("--layouts", &ctx.layouts, 0),
        CLI_S("--out", &ctx.out, 0), CLI_S("--links", &ctx.links, 0),
    };
    cli c = {"parlm-bench", table, (int)(sizeof table / sizeof table[0]), usage, names, 0};
    int prc = names ? cli_parse(&c, argc, argv) : 2;
    for (int i = 0; prc == 0 && i < c.npos; i++) {
        const char *a = names[i];
        if (!strcmp(a, "peak")) {
            want_peak = 1;
        } else if (!strcmp(a, "stream")) {
            want_stream = 1;
        } else if (!strcmp(a, "gemm")) {
            want_gemm = 1;
        } else if (!strcmp(a, "gemv")) {
            want_gemv = 1;
        } else if (!strcmp(a, "train")) {
            want_train = 1;
        } else if (!strcmp(a, "generate")) {
            want_gen = 1;
        } else if (!strcmp(a, "kernels")) {
            want_kern = 1;
        } else if (!strcmp(a, "allreduce")) {
            want_allreduce = 1;
        } else if (!strcmp(a, "dp")) {
            want_dp = 1;
        } else if (!strcmp(a, "tp")) {
            want_tp = 1;
        } else if (!strcmp(a, "mp")) {
            want_mp = 1;
        } else if (!strcmp(a, "calibrate")) {
            want_calib = 1;
        } else if (!strcmp(a, "all")) {
            want_peak = want_stream = want_gemm = want_gemv = want_train = want_gen = want_kern = 1;
        } else {
            fprintf(stderr, "parlm-bench: unknown benchmark '%s' (try --help)\n", a);
            prc = 2;
        }
    }
    free(names);
    if (prc)
        return prc < 0 ? 0 : prc;
    threads_set = ctx.max_threads > 0;
    if (!threads_set)
        ctx.max_threads = omp_get_max_threads();
    if (!(want_peak | want_stream | want_gemm | want_gemv | want_train | want_gen | want_kern |
          want_allreduce |
          want_dp | want_tp | want_mp | want_calib))
        want_peak = want_stream = want_gemm = want_gemv = want_train = want_gen = want_kern = 1;
    if (ctx.trace && want_dp == want_mp) {
        fprintf(stderr, "parlm-bench: --trace %s: the dp or the mp benchmark writes a trace "
                "(one of them)\n", ctx.trace);
        return 2;
    }
    /* under mpirun / srun: this rank's share of the node's cores, its threads bound there
     * (so ranks x threads does not exceed the cores unless asked for) */
    int local_rank, local_size;
    char share[64] = "";
    parlm_node_rank_env(&local_rank, &local_size);
    if (local_size > 1) {
        int nt = 0, want = threads_set || getenv("OMP_NUM_THREADS") ? ctx.max_threads : 0;
        if (parlm_place_threads(local_rank, local_size, want, 1, &nt, share, sizeof share) !=
            PARLM_OK)
            fprintf(stderr, "parlm-bench: rank %d of the node: %s\n", local_rank,
                    parlm_last_error());
        if (nt > 0)
            ctx.max_threads = nt;
    }
    int want_mpi = want_allreduce || want_dp || want_tp || want_mp;
#ifdef PARLM_HAVE_MPI
    /* calibrate measures links only when a launcher started several ranks */
    if (want_calib && launcher_ranks() > 1)
        want_mpi = 1;
#endif
    if (want_mpi && bench_mpi_init(&argc, &argv) < 0) /* before anything is printed */
        return 2;
    cli_gemm_env();
    if (parlm_isa_init() != PARLM_OK) {
        fprintf(stderr, "parlm-bench: %s\n", parlm_last_error());
        return 2;
    }
    if (ctx.quick)
        ctx.min_time = ctx.min_time < 0.05 ? ctx.min_time : 0.05;
    if (!ctx.json) {
        const char *why;
        parlm_bf16_path bp = parlm_bf16_path_current(&why);
        printf("parlm-bench %s: kernels %s%s, %d threads%s%s; bf16 GEMM path %s (%s)\n",
               parlm_version(), parlm_isa_name(parlm_isa_current()),
               parlm_cpu_has_avx512bf16() ? " (+avx512bf16)" : "", ctx.max_threads,
               share[0] ? " per rank on " : "", share, parlm_bf16_path_name(bp), why);
        if (want_gemv || want_gen) {
            parlm_gemv_mode gm = parlm_gemv_mode_current(&why);
            printf("GEMV loop order %s (%s)\n", parlm_gemv_mode_name(gm), why);
        }
        if (want_gemv || want_gen)
            for (int ti = 0; ti < 2; ti++) {
                int type = ti ? PARLM_WT_Q4_0 : PARLM_WT_Q8_0;
                parlm_qlayout ql = parlm_qlayout_current(type, &why);
                printf("%s decode layout %s (%s)\n", parlm_wtype_name(type),
                       parlm_qlayout_name(ql), why);
            }
    }
    bench_begin(&ctx);
    int rc = 0;
    /* GEMM quotes % of peak and GEMV % of bandwidth: measure those first */
    if (want_peak || want_gemm || want_train)
        rc |= bench_peak(&ctx);
    if (want_stream || want_gemv || want_gen)
        rc |= bench_stream(&ctx);
    if (want_gemm)
        rc |= bench_gemm(&ctx);
    if (want_gemv)
        rc |= bench_gemv(&ctx);
    if (want_train)
        rc |= bench_train(&ctx);
    if (want_gen)
        rc |= bench_generate(&ctx);
    if (want_kern)
        rc |= bench_kernels(&ctx);
    if (want_allreduce)
        rc |= bench_allreduce(&ctx);
    if (want_dp)
        rc |= bench_dp(&ctx);
    if (want_tp)
        rc |= bench_tp(&ctx);
    if (want_mp)
        rc |= bench_mp(&ctx);
    if (want_calib)
        rc |= bench_calibrate(&ctx);
    bench_end(&ctx);
    if (want_mpi)
        bench_mpi_finalize();
    return rc ? 1 : 0;
}
