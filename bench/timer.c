/* bench/timer.c — timing and reporting for parlm-bench: best-of-N timing, and
 * output as aligned tables for people or as one JSON document (--json) for CI. */
#include <math.h>
#include <stdio.h>
#include <time.h>

#include "bench.h"

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double bench_time(void (*fn)(void *), void *arg, double min_time)
{
    fn(arg); /* warm-up: page faults, packing buffers, thread start */
    double best = INFINITY, start = bench_now();
    for (int reps = 0; reps < 3 || bench_now() - start < min_time; reps++) {
        double t0 = bench_now();
        fn(arg);
        double dt = bench_now() - t0;
        if (dt < best)
            best = dt;
    }
    return best;
}

static int json_rows; /* rows printed so far in JSON mode */

void bench_begin(const bench_ctx *ctx)
{
    if (ctx->json) {
        printf("{\"results\": [");
        json_rows = 0;
    }
}

void bench_end(const bench_ctx *ctx)
{
    if (ctx->json)
        printf("\n], \"peak_1t_gflops\": %.2f, \"stream_gbs\": %.2f, \"max_threads\": %d}\n",
               ctx->peak_1t, ctx->stream_gbs, ctx->max_threads);
}

void bench_section(const bench_ctx *ctx, const char *title)
{
    if (ctx->json || ctx->silent)
        return;
    printf("\n== %s ==\n", title);
    printf("%-8s %-14s %-28s %3s %11s %9s %8s %7s %s\n", "bench", "impl", "shape", "thr",
           "time(ms)", "GFLOP/s", "GB/s", "%peak", "ratio");
    fflush(stdout);
}

static void num_or_dash(double v, int width, int prec)
{
    if (v > 0)
        printf(" %*.*f", width, prec, v);
    else
        printf(" %*s", width, "-");
}

/* the step split and overlap figures trail the row: the other tables stay as they are */
static void print_split(const bench_row *r)
{
    if (r->compute > 0 || r->opt > 0) {
        printf(" | compute %.1f", r->compute * 1e3);
        if (r->progress > 0)
            printf(" (of which comm progress %.1f)", r->progress * 1e3);
        if (r->comm > 0)
            printf(" + comm %.1f", r->comm * 1e3);
        printf(" + opt %.1f ms", r->opt * 1e3);
    }
    if (r->hidden_pct != 0)
        printf(" | hidden %.1f%%", r->hidden_pct);
    if (r->hidden_step_pct != 0)
        printf(" (step view %.1f%%)", r->hidden_step_pct);
}

void bench_report(const bench_ctx *ctx, const bench_row *r)
{
    if (ctx->silent)
        return;
    if (ctx->json) {
        printf("%s\n  {\"bench\": \"%s\", \"impl\": \"%s\", \"shape\": \"%s\", \"threads\": %d, "
               "\"seconds\": %.6g",
               json_rows++ ? "," : "", r->bench, r->impl, r->shape ? r->shape : "", r->threads,
               r->seconds);
        if (r->gflops > 0)
            printf(", \"gflops\": %.3f", r->gflops);
        if (r->gbs > 0)
            printf(", \"gbs\": %.3f", r->gbs);
        if (r->pct_peak > 0)
            printf(", \"pct_peak\": %.2f", r->pct_peak);
        if (r->ratio > 0)
            printf(", \"ratio\": %.3f, \"baseline\": \"%s\"", r->ratio,
                   r->baseline ? r->baseline : "");
        const struct {
            const char *key;
            double v;
        } split[] = {{"compute_s", r->compute}, {"comm_s", r->comm},
                     {"progress_s", r->progress}, {"opt_s", r->opt}};
        for (size_t i = 0; i < sizeof split / sizeof split[0]; i++)
            if (split[i].v > 0)
                printf(", \"%s\": %.6g", split[i].key, split[i].v);
        /* JSON has no inf or nan */
        if (r->hidden_pct != 0 && isfinite(r->hidden_pct))
            printf(", \"hidden_pct\": %.2f", r->hidden_pct);
        if (r->hidden_step_pct != 0 && isfinite(r->hidden_step_pct))
            printf(", \"hidden_step_pct\": %.2f", r->hidden_step_pct);
        printf("}");
    } else {
        printf("%-8s %-14s %-28s %3d", r->bench, r->impl, r->shape ? r->shape : "", r->threads);
        num_or_dash(r->seconds * 1e3, 11, 3);
        num_or_dash(r->gflops, 9, 1);
        num_or_dash(r->gbs, 8, 1);
        num_or_dash(r->pct_peak, 6, 1);
        if (r->pct_peak > 0)
            printf("%%");
        else
            printf(" ");
        if (r->ratio > 0)
            printf(" %.2fx %s", r->ratio, r->baseline ? r->baseline : "");
        print_split(r);
        printf("\n");
    }
    fflush(stdout);
}
