/* bench/peak.c — the roofline ceiling: f32 FMA throughput of one core (and of all).
 * Many independent accumulators hide the FMA latency (4 cycles x 2 pipes on recent
 * x86 needs >= 8 in flight); the loop has no loads, so only the FMA pipes limit it.
 * Each ISA's loop is compiled for it with a target attribute and picked at run time. */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>

#include "bench.h"
#include "parlm.h"

#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

#define NACC 24 /* accumulators: enough for 2 pipes x 4-cycle latency x unroll slack */

/* Returns flops performed; the sum keeps the compiler from removing the loop. */
#if defined(__x86_64__)
__attribute__((target("avx512f"))) static double fma_loop_avx512(int64_t iters, float *sink)
{
    __m512 acc[NACC];
    __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < NACC; i++)
        acc[i] = _mm512_set1_ps((float)i);
    for (int64_t it = 0; it < iters; it++) {
        /* fully unrolled, so the accumulators live in registers, not in memory */
#pragma GCC unroll 24
        for (int i = 0; i < NACC; i++)
            acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    }
    __m512 s = acc[0];
    for (int i = 1; i < NACC; i++)
        s = _mm512_add_ps(s, acc[i]);
    *sink = _mm512_reduce_add_ps(s);
    return 2.0 * 16 * NACC * (double)iters;
}

__attribute__((target("avx2,fma"))) static double fma_loop_avx2(int64_t iters, float *sink)
{
    __m256 acc[NACC / 2];
    __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < NACC / 2; i++)
        acc[i] = _mm256_set1_ps((float)i);
    for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < NACC / 2; i++)
            acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    }
    float out[8];
    __m256 s = acc[0];
    for (int i = 1; i < NACC / 2; i++)
        s = _mm256_add_ps(s, acc[i]);
    _mm256_storeu_ps(out, s);
    *sink = out[0] + out[7];
    return 2.0 * 8 * (NACC / 2) * (double)iters;
}
#elif defined(__aarch64__)
static double fma_loop_neon(int64_t iters, float *sink)
{
    float32x4_t acc[NACC];
    float32x4_t a = vdupq_n_f32(0.999999f), b = vdupq_n_f32(1e-7f);
    for (int i = 0; i < NACC; i++)
        acc[i] = vdupq_n_f32((float)i);
    for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 24
        for (int i = 0; i < NACC; i++)
            acc[i] = vfmaq_f32(b, acc[i], a);
    }
    float s = 0;
    for (int i = 0; i < NACC; i++)
        s += vaddvq_f32(acc[i]);
    *sink = s;
    return 2.0 * 4 * NACC * (double)iters;
}
#endif

static double fma_loop_scalar(int64_t iters, float *sink)
{
    float acc[NACC];
    for (int i = 0; i < NACC; i++)
        acc[i] = (float)i;
    for (int64_t it = 0; it < iters; it++)
        for (int i = 0; i < NACC; i++)
            acc[i] = acc[i] * 0.999999f + 1e-7f;
    float s = 0;
    for (int i = 0; i < NACC; i++)
        s += acc[i];
    *sink = s;
    return 2.0 * NACC * (double)iters;
}

static double fma_loop(int64_t iters, float *sink)
{
    switch (parlm_isa_current()) {
#if defined(__x86_64__)
    case PARLM_ISA_AVX512: return fma_loop_avx512(iters, sink);
    case PARLM_ISA_AVX2: return fma_loop_avx2(iters, sink);
#elif defined(__aarch64__)
    case PARLM_ISA_NEON: return fma_loop_neon(iters, sink);
#endif
    default: return fma_loop_scalar(iters, sink);
    }
}

/* Best GFLOP/s over a few runs with `threads` threads, each running its own loop. */
double bench_peak_gflops(int threads, int64_t iters, double *seconds)
{
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double flops = 0, t0 = bench_now();
        float sinks[256];
#pragma omp parallel num_threads(threads) reduction(+ : flops)
        flops += fma_loop(iters, &sinks[omp_get_thread_num() % 256]);
        double dt = bench_now() - t0;
        if (flops / dt * 1e-9 > best) {
            best = flops / dt * 1e-9;
            *seconds = dt;
        }
    }
    return best;
}

int bench_peak(bench_ctx *ctx)
{
    int64_t iters = ctx->quick ? BENCH_PEAK_ITERS / 8 : BENCH_PEAK_ITERS;
    bench_section(ctx, "peak: f32 FMA throughput (the roofline ceiling)");
    int tlist[2] = {1, ctx->max_threads};
    for (int i = 0; i < (ctx->max_threads > 1 ? 2 : 1); i++) {
        double sec = 0, g = bench_peak_gflops(tlist[i], iters, &sec);
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
