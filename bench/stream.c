/* bench/stream.c — memory bandwidth with a STREAM-style triad a = b + s*c over arrays
 * far larger than the last-level cache. Counted as 3 arrays x 4 bytes per element
 * (STREAM's convention: write-allocate traffic not counted). The GEMV benchmark
 * compares its weight streaming against this number. */
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

#include "bench.h"
#include "parlm.h"

typedef struct triad {
    float *a, *b, *c;
    int64_t n;
    int threads;
} triad;

static void run_triad(void *p)
{
    triad *t = p;
    float *a = t->a;
    const float *b = t->b, *c = t->c;
    const float s = 3.0f;
#pragma omp parallel for num_threads(t->threads) schedule(static)
    for (int64_t i = 0; i < t->n; i++)
        a[i] = b[i] + s * c[i];
}

int bench_stream(bench_ctx *ctx)
{
    /* 3 x 128 MiB: 12x a 32 MiB L3, so the caches hold a negligible share */
    int64_t n = ctx->quick ? (INT64_C(8) << 20) : (INT64_C(32) << 20);
    triad t = {parlm_alloc((size_t)n, 4), parlm_alloc((size_t)n, 4), parlm_alloc((size_t)n, 4),
               n, ctx->max_threads};
    if (!t.a || !t.b || !t.c) {
        fprintf(stderr, "stream: cannot allocate 3 x %lld floats\n", (long long)n);
        parlm_free(t.a), parlm_free(t.b), parlm_free(t.c);
        return 1;
    }
    /* first touch by the threads that will stream the pages */
#pragma omp parallel for num_threads(ctx->max_threads) schedule(static)
    for (int64_t i = 0; i < n; i++)
        t.a[i] = 0.0f, t.b[i] = 1.0f, t.c[i] = 2.0f;
    bench_section(ctx, "stream: triad a = b + s*c (memory bandwidth)");
    char shape[32];
    snprintf(shape, sizeof shape, "3x%lldMiB", (long long)(n * 4 >> 20));
    int tlist[2] = {1, ctx->max_threads};
    for (int i = 0; i < (ctx->max_threads > 1 ? 2 : 1); i++) {
        t.threads = tlist[i];
        double sec = bench_time(run_triad, &t, ctx->min_time);
        double gbs = 3.0 * 4.0 * (double)n / sec * 1e-9;
        if (tlist[i] == ctx->max_threads)
            ctx->stream_gbs = gbs;
        bench_row r = {.bench = "stream", .impl = "triad", .shape = shape, .threads = tlist[i],
                       .seconds = sec, .gbs = gbs};
        bench_report(ctx, &r);
    }
    parlm_free(t.a), parlm_free(t.b), parlm_free(t.c);
    return 0;
}
