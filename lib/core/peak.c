/* lib/core/peak.c — the roofline ceiling: f32 FMA throughput of one core (and of all).
 * Many independent accumulators hide the FMA latency (4 cycles x 2 pipes on recent
 * x86 needs >= 8 in flight); the loop has no loads, so only the FMA pipes limit it.
 * Each ISA's loop is compiled for it with a target attribute and picked at run time. */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "parlm/isa.h"
#include "parlm/peak.h"

#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

#define PEAK_REPS 7

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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

/* Best GFLOP/s over runs with `threads` threads, each running its own loop. A lone
 * measurement was off by up to 10x (34 vs ~340 GFLOP/s on one idle machine): the first
 * parallel region pays for starting the threads, a cold core runs 512-bit FMAs slowly
 * until its power license is granted, and a time slice lost to another process counts as
 * FMA time. So: a warm-up loop on every thread first, then PEAK_REPS runs, each
 * started by a barrier and timed from the first thread's start to the last one's end
 * (threads sharing a core then count once, not twice), and the best run wins. */
double parlm_peak_gflops(int threads, int64_t iters, double *seconds)
{
    enum { MAXT = 256 };
    double start[PEAK_REPS][MAXT], end[PEAK_REPS][MAXT], flops[MAXT];
    if (threads > MAXT)
        threads = MAXT;
    if (threads < 1)
        threads = 1;
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num();
        float sink;
        fma_loop(iters / 2 + 1, &sink);
        for (int r = 0; r < PEAK_REPS; r++) {
#pragma omp barrier
            start[r][t] = now();
            flops[t] = fma_loop(iters, &sink);
            end[r][t] = now();
        }
    }
    double best = 0, total = 0;
    for (int t = 0; t < threads; t++)
        total += flops[t];
    double sec = 0;
    for (int r = 0; r < PEAK_REPS; r++) {
        double t0 = start[r][0], t1 = end[r][0];
        for (int t = 1; t < threads; t++) {
            t0 = start[r][t] < t0 ? start[r][t] : t0;
            t1 = end[r][t] > t1 ? end[r][t] : t1;
        }
        if (t1 > t0 && total / (t1 - t0) * 1e-9 > best) {
            best = total / (t1 - t0) * 1e-9;
            sec = t1 - t0;
        }
    }
    if (seconds)
        *seconds = sec;
    return best;
}

/* "<isa> <threads>t <cpu model>": what a cached peak is valid for */
static void peak_key(char *key, size_t len, int threads)
{
    char model[256] = "unknown CPU", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (c && (!strncmp(line, "model name", 10) || !strncmp(line, "Hardware", 8))) {
            snprintf(model, sizeof model, "%s", c + 1 + (c[1] == ' '));
            model[strcspn(model, "\n")] = 0;
            break;
        }
    }
    if (f)
        fclose(f);
    for (char *p = model; *p; p++) /* the key is one field of a line */
        if (*p == '|' || (unsigned char)*p < ' ')
            *p = ' ';
    snprintf(key, len, "%s %dt %s", parlm_isa_name(parlm_isa_current()), threads, model);
}

/* the directories on the way to the file `path`, made where missing (errors are left to
 * the fopen that follows) */
static void make_dirs(const char *path)
{
    char d[4096];
    if (snprintf(d, sizeof d, "%s", path) >= (int)sizeof d)
        return;
    for (char *p = strchr(d + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = 0;
        mkdir(d, 0755);
        *p = '/';
    }
}

double parlm_peak_remember(const char *path, int threads, double measured, double *cached)
{
    char tmp[4200], key[400], line[1024];
    char keep[64][1024];
    double keep_g[64];
    int nkeep = 0;
    double found = 0;
    if (cached)
        *cached = 0;
    if (!path || !*path || strlen(path) >= 4096)
        return measured;
    peak_key(key, sizeof key, threads);
    /* lines "key|gflops"; anything malformed is dropped */
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f)) {
        char *bar = strrchr(line, '|'), *end;
        if (!bar || !strchr(line, '\n'))
            continue;
        *bar = 0;
        double g = strtod(bar + 1, &end);
        if (!(g > 0 && g < 1e9) || (*end != '\n' && *end))
            continue;
        if (!strcmp(line, key))
            found = g;
        else if (nkeep < 64) {
            snprintf(keep[nkeep], sizeof keep[0], "%s", line);
            keep_g[nkeep++] = g;
        }
    }
    if (f)
        fclose(f);
    if (cached)
        *cached = found;
    if (measured <= found)
        return found;
    /* a new best: rewrite the file through a temporary one (atomic for readers) */
    make_dirs(path);
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    f = fopen(tmp, "w");
    if (!f)
        return measured;
    for (int i = 0; i < nkeep; i++)
        fprintf(f, "%s|%.17g\n", keep[i], keep_g[i]);
    fprintf(f, "%s|%.17g\n", key, measured);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        remove(tmp);
    return measured;
}
