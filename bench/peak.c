/* bench/peak.c — the "peak" benchmark: the f32 FMA throughput of one core and of all,
 * measured by the library's parlm_peak_gflops (lib/core/peak.c), the roofline ceiling
 * the other benchmarks report their %peak against. */
#include "bench.h"
#include "parlm.h"

int bench_peak(bench_ctx *ctx)
{
    int64_t iters = ctx->quick ? PARLM_PEAK_ITERS / 8 : PARLM_PEAK_ITERS;
    bench_section(ctx, "peak: f32 FMA throughput (the roofline ceiling)");
    int tlist[2] = {1, ctx->max_threads};
    for (int i = 0; i < (ctx->max_threads > 1 ? 2 : 1); i++) {
        double sec = 0, g = parlm_peak_gflops(tlist[i], iters, &sec);
        if (tlist[i] == 1)
            ctx->peak_1t = g;
        bench_row r = {.bench = "peak", .impl = parlm_isa_name(parlm_isa_current()),
                       .shape = "fma", .threads = tlist[i], .seconds = sec, .gflops = g};
        if (tlist[i] > 1) {
            r.ratio = g / ctx->peak_1t;
            r.baseline = "1 thread";
        }
        bench_report(ctx, &r);
    }
    return 0;
}
