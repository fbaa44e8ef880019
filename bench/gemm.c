/* bench/gemm.c — GEMM and decode-GEMV benchmarks: parlm f32 and bf16 against OpenBLAS
 * (same run, same threads) and against llm.c's naive loop, on square sizes and on the
 * matmuls of GPT-2 small training with B*T = 256 (forward: out = inp W^T, i.e. NT).
 * GEMV weights are cycled through more copies than the L3 holds, as a model's layers
 * are in decoding, so GB/s is the rate weights arrive from memory. */
#include "config.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef PARLM_HAVE_OPENBLAS
#include <cblas.h>
#endif

#include "bench.h"
#include "parlm.h"

typedef struct gemm_shape {
    int64_t M, N, K;
    parlm_trans ta, tb;
    int quick; /* also in --quick runs */
    int naive; /* small enough for the naive loop */
} gemm_shape;

static const gemm_shape gemm_shapes[] = {
    {256, 256, 256, PARLM_NO_TRANS, PARLM_NO_TRANS, 1, 1},
    {512, 512, 512, PARLM_NO_TRANS, PARLM_NO_TRANS, 0, 1},
    {1024, 1024, 1024, PARLM_NO_TRANS, PARLM_NO_TRANS, 0, 0},
    {2048, 2048, 2048, PARLM_NO_TRANS, PARLM_NO_TRANS, 0, 0},
    {256, 768, 768, PARLM_NO_TRANS, PARLM_TRANS, 1, 1},   /* attention projection */
    {256, 3072, 768, PARLM_NO_TRANS, PARLM_TRANS, 1, 0},  /* MLP up */
    {256, 768, 3072, PARLM_NO_TRANS, PARLM_TRANS, 0, 0},  /* MLP down */
    {256, 50304, 768, PARLM_NO_TRANS, PARLM_TRANS, 0, 0}, /* logits (tied embedding) */
    {1024, 3072, 768, PARLM_NO_TRANS, PARLM_TRANS, 0, 0}, /* MLP up, B*T = 1024 */
};

typedef struct gemm_run {
    const gemm_shape *s;
    const float *A, *B;
    const uint16_t *Ah, *Bh;
    float *C;
    int threads;
} gemm_run;

static int64_t lda_of(const gemm_shape *s) { return s->ta ? s->M : s->K; }
static int64_t ldb_of(const gemm_shape *s) { return s->tb ? s->K : s->N; }

static void run_parlm_f32(void *p)
{
    gemm_run *r = p;
    const gemm_shape *s = r->s;
    parlm_sgemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, r->A, lda_of(s), r->B, ldb_of(s), 0.0f,
                r->C, s->N);
}

static void run_parlm_bf16(void *p)
{
    gemm_run *r = p;
    const gemm_shape *s = r->s;
    parlm_gemm_bf16(s->ta, s->tb, s->M, s->N, s->K, 1.0f, r->Ah, lda_of(s), r->Bh, ldb_of(s),
                    0.0f, r->C, s->N);
}

#ifdef PARLM_HAVE_OPENBLAS
static void run_openblas(void *p)
{
    gemm_run *r = p;
    const gemm_shape *s = r->s;
    cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
                s->tb ? CblasTrans : CblasNoTrans, (int)s->M, (int)s->N, (int)s->K, 1.0f, r->A,
                (int)lda_of(s), r->B, (int)ldb_of(s), 0.0f, r->C, (int)s->N);
}
#endif

/* llm.c's matmul_forward_naive: one dot product per output, rows over threads (NN and NT
 * as stored; the naive baseline only runs on those). */
static void run_naive(void *arg)
{
    gemm_run *r = arg;
    const gemm_shape *s = r->s;
    const float *A = r->A, *B = r->B;
    float *C = r->C;
    int64_t M = s->M, N = s->N, K = s->K;
    int nt = s->tb == PARLM_TRANS;
#pragma omp parallel for num_threads(r->threads) schedule(static)
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float v = 0.0f;
            for (int64_t p = 0; p < K; p++)
                v += A[i * K + p] * (nt ? B[j * K + p] : B[p * N + j]);
            C[i * N + j] = v;
        }
}

static void fill(float *x, int64_t n, uint32_t seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) * (1.0f / 16777216.0f) - 0.5f;
    }
}

static void shape_name(char *buf, size_t n, const gemm_shape *s)
{
    snprintf(buf, n, "%lldx%lldx%lld %s%s", (long long)s->M, (long long)s->N, (long long)s->K,
             s->ta ? "T" : "N", s->tb ? "T" : "N");
}

/* one row of the table; pct of threads * peak_1t, ratio against `base` seconds if > 0 */
static void report_gemm(const bench_ctx *ctx, const char *impl, const char *shape, int threads,
                        double flops, double sec, double base, const char *base_name)
{
    bench_row row = {.bench = "gemm", .impl = impl, .shape = shape, .threads = threads,
                     .seconds = sec, .gflops = flops / sec * 1e-9};
    if (ctx->peak_1t > 0)
        row.pct_peak = 100.0 * row.gflops / (threads * ctx->peak_1t);
    if (base > 0) {
        row.ratio = base / sec;
        row.baseline = base_name;
    }
    bench_report(ctx, &row);
}

double bench_gemm_seconds(int64_t M, int64_t N, int64_t K, int ta, int tb, int bf16,
                          int threads, double min_time)
{
    gemm_shape s = {M, N, K, ta ? PARLM_TRANS : PARLM_NO_TRANS, tb ? PARLM_TRANS : PARLM_NO_TRANS,
                    0, 0};
    float *A = parlm_alloc((size_t)(M * K), 4), *B = parlm_alloc((size_t)(K * N), 4);
    float *C = parlm_alloc((size_t)(M * N), 4);
    uint16_t *Ah = bf16 ? parlm_alloc((size_t)(M * K), 2) : NULL;
    uint16_t *Bh = bf16 ? parlm_alloc((size_t)(K * N), 2) : NULL;
    double sec = -1.0;
    if (A && B && C && (!bf16 || (Ah && Bh))) {
        fill(A, M * K, 11u), fill(B, K * N, 13u);
        memset(C, 0, (size_t)(M * N) * 4);
        if (bf16)
            parlm_f32_to_bf16(A, Ah, M * K), parlm_f32_to_bf16(B, Bh, K * N);
        gemm_run r = {&s, A, B, Ah, Bh, C, threads};
        omp_set_num_threads(threads);
        sec = bench_time(bf16 ? run_parlm_bf16 : run_parlm_f32, &r, min_time);
    }
    parlm_free(A), parlm_free(B), parlm_free(C), parlm_free(Ah), parlm_free(Bh);
    return sec;
}

int bench_gemm(bench_ctx *ctx)
{
    bench_section(ctx, "gemm: C = A op(B), GFLOP/s (ratio = speed-up over the baseline)");
    int tlist[2] = {1, ctx->max_threads}, ntl = ctx->max_threads > 1 ? 2 : 1;
    int nshapes = (int)(sizeof gemm_shapes / sizeof gemm_shapes[0]);
    for (int si = 0; si < nshapes; si++) {
        const gemm_shape *s = &gemm_shapes[si];
        if (ctx->quick && !s->quick)
            continue;
        int64_t na = s->M * s->K, nb = s->K * s->N, nc = s->M * s->N;
        float *A = parlm_alloc((size_t)na, 4), *B = parlm_alloc((size_t)nb, 4);
        float *C = parlm_alloc((size_t)nc, 4);
        uint16_t *Ah = parlm_alloc((size_t)na, 2), *Bh = parlm_alloc((size_t)nb, 2);
        if (!A || !B || !C || !Ah || !Bh) {
            fprintf(stderr, "gemm: cannot allocate the operands of %lldx%lldx%lld\n",
                    (long long)s->M, (long long)s->N, (long long)s->K);
            parlm_free(A), parlm_free(B), parlm_free(C), parlm_free(Ah), parlm_free(Bh);
            return 1;
        }
        fill(A, na, 1u + (uint32_t)si);
        fill(B, nb, 7u + (uint32_t)si);
        memset(C, 0, (size_t)nc * 4);
        parlm_f32_to_bf16(A, Ah, na);
        parlm_f32_to_bf16(B, Bh, nb);
        char shape[48];
        shape_name(shape, sizeof shape, s);
        double flops = 2.0 * (double)s->M * (double)s->N * (double)s->K;
        for (int ti = 0; ti < ntl; ti++) {
            gemm_run r = {s, A, B, Ah, Bh, C, tlist[ti]};
            omp_set_num_threads(r.threads);
            double base = 0.0;
            const char *base_name = NULL;
#ifdef PARLM_HAVE_OPENBLAS
            openblas_set_num_threads(r.threads);
            base = bench_time(run_openblas, &r, ctx->min_time);
            base_name = "openblas";
            report_gemm(ctx, "openblas", shape, r.threads, flops, base, 0.0, NULL);
#endif
            double naive = 0.0;
            if (s->naive && (!ctx->quick || s->M * s->N * s->K <= (INT64_C(1) << 24))) {
                /* the naive loop is ~100x slower: one timed call is plenty */
                naive = bench_time(run_naive, &r, 0.0);
                report_gemm(ctx, "naive", shape, r.threads, flops, naive, base, base_name);
            }
            if (base <= 0.0) { /* no OpenBLAS: compare with the naive loop when it ran */
                base = naive;
                base_name = naive > 0 ? "naive" : NULL;
            }
            double t32 = bench_time(run_parlm_f32, &r, ctx->min_time);
            report_gemm(ctx, "parlm-f32", shape, r.threads, flops, t32, base, base_name);
            double t16 = bench_time(run_parlm_bf16, &r, ctx->min_time);
            report_gemm(ctx, "parlm-bf16", shape, r.threads, flops, t16, t32, "parlm-f32");
        }
        parlm_free(A), parlm_free(B), parlm_free(C), parlm_free(Ah), parlm_free(Bh);
    }
    omp_set_num_threads(ctx->max_threads);
    return 0;
}

/* ---- GEMV ------------------------------------------------------------------------------ */

typedef struct gemv_run {
    int64_t rows, cols, copies, qcopies, next; /* qcopies: of the (smaller) Q8 / Q4 ones */
    float **w;     /* `copies` f32 weight matrices, rows x cols */
    uint16_t **wh; /* and bf16 ones */
    uint8_t **w8, **w4; /* and Q8_0 / Q4_0 ones (quantized from the f32 copies) */
    uint8_t **r8, **r4; /* and those repacked 8 rows at a time (parlm_qrepack) */
    const float *x;
    float *y;
} gemv_run;

static void run_gemv_f32(void *p)
{
    gemv_run *r = p;
    const float *w = r->w[r->next++ % r->copies];
    parlm_sgemv(PARLM_NO_TRANS, r->rows, r->cols, 1.0f, w, r->cols, r->x, 0.0f, r->y);
}

static void run_gemv_bf16(void *p)
{
    gemv_run *r = p;
    const uint16_t *w = r->wh[r->next++ % r->copies];
    parlm_gemv_bf16(r->rows, r->cols, 1.0f, w, r->cols, r->x, 0.0f, r->y);
}

static void run_gemv_q8(void *p)
{
    gemv_run *r = p;
    parlm_qgemv(PARLM_WT_Q8_0, r->rows, r->cols, r->w8[r->next++ % r->qcopies], r->x, r->y);
}

static void run_gemv_q4(void *p)
{
    gemv_run *r = p;
    parlm_qgemv(PARLM_WT_Q4_0, r->rows, r->cols, r->w4[r->next++ % r->qcopies], r->x, r->y);
}

static void run_gemv_q8r(void *p)
{
    gemv_run *r = p;
    parlm_qgemv_repacked(PARLM_WT_Q8_0, r->rows, r->cols, r->r8[r->next++ % r->qcopies], r->x,
                         r->y);
}

static void run_gemv_q4r(void *p)
{
    gemv_run *r = p;
    parlm_qgemv_repacked(PARLM_WT_Q4_0, r->rows, r->cols, r->r4[r->next++ % r->qcopies], r->x,
                         r->y);
}

#ifdef PARLM_HAVE_OPENBLAS
static void run_gemv_openblas(void *p)
{
    gemv_run *r = p;
    const float *w = r->w[r->next++ % r->copies];
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)r->rows, (int)r->cols, 1.0f, w, (int)r->cols,
                r->x, 1, 0.0f, r->y, 1);
}
#endif

static void report_gemv(const bench_ctx *ctx, const char *impl, const char *shape, int threads,
                        double bytes, double sec, double base, const char *base_name)
{
    bench_row row = {.bench = "gemv", .impl = impl, .shape = shape, .threads = threads,
                     .seconds = sec, .gbs = bytes / sec * 1e-9};
    if (ctx->stream_gbs > 0)
        row.pct_peak = 100.0 * row.gbs / ctx->stream_gbs;
    if (base > 0) {
        row.ratio = base / sec;
        row.baseline = base_name;
    }
    bench_report(ctx, &row);
}

int bench_gemv(bench_ctx *ctx)
{
    bench_section(ctx, "gemv: y = W x, decode (GB/s of weights from memory; %peak = of STREAM)");
    /* GPT-2 small decode: attention projection, MLP up (3072 rows of 768), MLP down
     * (768 rows of 3072), the tied-embedding logits (50304 rows); a matrix larger than
     * the L3 on its own (a 7B model's MLP, f32 256 MiB) */
    static const int64_t shapes[][2] = {{768, 768},   {3072, 768},  {768, 3072},
                                        {50304, 768}, {16384, 4096}};
    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    /* weights cycled through >= 96 MiB (3x a 32 MiB L3): each call finds them in memory */
    int64_t budget = (ctx->quick ? INT64_C(24) : INT64_C(96)) << 20;
    int tlist[2] = {1, ctx->max_threads}, ntl = ctx->max_threads > 1 ? 2 : 1;
    for (int si = 0; si < nshapes; si++) {
        if (ctx->quick && si >= 3)
            continue;
        gemv_run r = {.rows = shapes[si][0], .cols = shapes[si][1]};
        int64_t n = r.rows * r.cols;
        r.copies = budget / (n * 4) + 1;
        r.w = calloc((size_t)r.copies, sizeof *r.w);
        r.wh = calloc((size_t)r.copies, sizeof *r.wh);
        uint64_t b8 = 0, b4 = 0, rb8 = 0, rb4 = 0; /* bytes of one Q8_0 / Q4_0 matrix */
        parlm_wtype_bytes(PARLM_WT_Q8_0, (uint64_t)n, &b8);
        parlm_wtype_bytes(PARLM_WT_Q4_0, (uint64_t)n, &b4);
        parlm_qrepack_bytes(PARLM_WT_Q8_0, r.rows, r.cols, &rb8); /* = b8 for rows % 8 == 0 */
        parlm_qrepack_bytes(PARLM_WT_Q4_0, r.rows, r.cols, &rb4);
        r.qcopies = budget / (int64_t)b4 + 1; /* the Q4 copies alone exceed the budget */
        r.w8 = calloc((size_t)r.qcopies, sizeof *r.w8);
        r.w4 = calloc((size_t)r.qcopies, sizeof *r.w4);
        r.r8 = calloc((size_t)r.qcopies, sizeof *r.r8);
        r.r4 = calloc((size_t)r.qcopies, sizeof *r.r4);
        float *x = parlm_alloc((size_t)r.cols, 4);
        r.y = parlm_alloc((size_t)r.rows, 4);
        int ok = r.w && r.wh && r.w8 && r.w4 && r.r8 && r.r4 && x && r.y;
        for (int64_t c = 0; ok && c < r.copies; c++) {
            r.w[c] = parlm_alloc((size_t)n, 4);
            r.wh[c] = parlm_alloc((size_t)n, 2);
            ok = r.w[c] && r.wh[c];
            if (ok) {
                fill(r.w[c], n, 3u + (uint32_t)c);
                parlm_f32_to_bf16(r.w[c], r.wh[c], n);
            }
        }
        for (int64_t c = 0; ok && c < r.qcopies; c++) {
            r.w8[c] = parlm_alloc((size_t)b8, 1);
            r.w4[c] = parlm_alloc((size_t)b4, 1);
            r.r8[c] = parlm_alloc((size_t)rb8, 1);
            r.r4[c] = parlm_alloc((size_t)rb4, 1);
            ok = r.w8[c] && r.w4[c] && r.r8[c] && r.r4[c] &&
                 parlm_quantize(PARLM_WT_Q8_0, r.w[c % r.copies], n, r.w8[c]) == PARLM_OK &&
                 parlm_quantize(PARLM_WT_Q4_0, r.w[c % r.copies], n, r.w4[c]) == PARLM_OK &&
                 parlm_qrepack(PARLM_WT_Q8_0, r.rows, r.cols, r.w8[c], r.r8[c]) == PARLM_OK &&
                 parlm_qrepack(PARLM_WT_Q4_0, r.rows, r.cols, r.w4[c], r.r4[c]) == PARLM_OK;
        }
        if (ok) {
            fill(x, r.cols, 5u);
            r.x = x;
            char shape[48];
            snprintf(shape, sizeof shape, "1x%lldx%lld", (long long)r.rows, (long long)r.cols);
            for (int ti = 0; ti < ntl; ti++) {
                int threads = tlist[ti];
                omp_set_num_threads(threads);
                double base = 0.0;
                const char *base_name = NULL;
#ifdef PARLM_HAVE_OPENBLAS
                openblas_set_num_threads(threads);
                base = bench_time(run_gemv_openblas, &r, ctx->min_time);
                base_name = "openblas";
                report_gemv(ctx, "openblas", shape, threads, 4.0 * (double)n, base, 0.0, NULL);
#endif
                double t32 = bench_time(run_gemv_f32, &r, ctx->min_time);
                report_gemv(ctx, "parlm-f32", shape, threads, 4.0 * (double)n, t32, base,
                            base_name);
                double t16 = bench_time(run_gemv_bf16, &r, ctx->min_time);
                report_gemv(ctx, "parlm-bf16", shape, threads, 2.0 * (double)n, t16, t32,
                            "parlm-f32");
                /* GB/s of the weight bytes each reads; the ratio is time against bf16's
                 * for the repacked ("r8") kernels, against r8's for the plain rows (a
                 * GGUF file's layout, read in place) */
                double tr8 = bench_time(run_gemv_q8r, &r, ctx->min_time);
                report_gemv(ctx, "parlm-q8_0-r8", shape, threads, (double)rb8, tr8, t16,
                            "parlm-bf16");
                double tq8 = bench_time(run_gemv_q8, &r, ctx->min_time);
                report_gemv(ctx, "parlm-q8_0", shape, threads, (double)b8, tq8, tr8,
                            "parlm-q8_0-r8");
                double tr4 = bench_time(run_gemv_q4r, &r, ctx->min_time);
                report_gemv(ctx, "parlm-q4_0-r8", shape, threads, (double)rb4, tr4, t16,
                            "parlm-bf16");
                double tq4 = bench_time(run_gemv_q4, &r, ctx->min_time);
                report_gemv(ctx, "parlm-q4_0", shape, threads, (double)b4, tq4, tr4,
                            "parlm-q4_0-r8");
            }
        } else {
            fprintf(stderr, "gemv: cannot allocate %lld copies of %lldx%lld weights\n",
                    (long long)r.copies, (long long)r.rows, (long long)r.cols);
        }
        for (int64_t c = 0; c < r.copies; c++) {
            if (r.w)
                parlm_free(r.w[c]);
            if (r.wh)
                parlm_free(r.wh[c]);
        }
        for (int64_t c = 0; c < r.qcopies; c++) {
            if (r.w8)
                parlm_free(r.w8[c]);
            if (r.w4)
                parlm_free(r.w4[c]);
            if (r.r8)
                parlm_free(r.r8[c]);
            if (r.r4)
                parlm_free(r.r4[c]);
        }
        free(r.w), free(r.wh), free(r.w8), free(r.w4), free(r.r8), free(r.r4);
        parlm_free(x), parlm_free(r.y);
        if (!ok)
            return 1;
    }
    omp_set_num_threads(ctx->max_threads);
    return 0;
}
