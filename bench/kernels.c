/* bench/kernels.c — the non-GEMM kernels of the per-ISA table (simd/kernels.h), each
 * called directly on one thread at GPT-2 124M shapes, for the selected kernel set and the
 * scalar reference in the same run (ratio = scalar time / this time). Memory-bound ops
 * report GB/s of the bytes they must move, attention GFLOP/s of its causal matmuls.
 * Times are the best CPU time of the calling thread (steadier than wall time on a shared
 * machine: time the thread was descheduled does not count). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../lib/core/dispatch.h"
#include "bench.h"
#include "parlm.h"

enum { ROWS = 256, C = 768, C4 = 3072, HS = 64, V = 50257, VP = 50304, CE_ROWS = 16 };
enum { NOPT = 1 << 20 };
enum { NHEAD = 12, HFF = 2048 }; /* Llama ops: RoPE heads (12 x 64 = C), SwiGLU hidden width */

typedef struct kbuf {
    const parlm_kernels *k;
    int64_t T; /* attention length */
    float *a, *b, *out, *dx, *w, *bias, *mean, *rstd, *dw, *db;
    float *q, *kk, *v, *ao, *dq, *dk, *dv, *lse, *scratch;
    float *logits, *dlogits, *loss, *celse, *dloss;
    int32_t *tok, *target;
    float *wte, *wpe;
    float *p, *g, *m, *vv;
    uint16_t *h;
    float *gu, *dgu;  /* SwiGLU gate|up (ROWS, 2 HFF) and its gradient */
    float *cs, *sn;   /* RoPE tables (ROWS, HS) */
    float *rrstd;     /* RMSNorm's rstd (ROWS) */
    double sink;
} kbuf;

static void r_add(void *a) { kbuf *b = a; b->k->add(b->out, b->a, b->b, (int64_t)ROWS * C); }
static void r_bias_fwd(void *a) { kbuf *b = a; b->k->bias_fwd(b->out, b->bias, ROWS, C); }
static void r_bias_bwd(void *a) { kbuf *b = a; b->k->bias_bwd(b->db, b->a, ROWS, C); }
static void r_gelu_fwd(void *a) { kbuf *b = a; b->k->gelu_fwd(b->out, b->a, (int64_t)ROWS * C4); }
static void r_gelu_bwd(void *a)
{
    kbuf *b = a;
    b->k->gelu_bwd(b->dx, b->a, b->b, (int64_t)ROWS * C4);
}
static void r_ln_fwd(void *a)
{
    kbuf *b = a;
    b->k->layernorm_fwd(b->out, b->mean, b->rstd, b->a, b->w, b->bias, ROWS, C);
}
static void r_ln_bwd(void *a)
{
    kbuf *b = a;
    b->k->layernorm_bwd(b->dx, b->dw, b->db, b->b, b->a, b->w, b->mean, b->rstd, ROWS, C);
}
/* softmax rows as attention scores of T=256 (ROWS rows of 256) */
static void r_sm_fwd(void *a) { kbuf *b = a; b->k->softmax_fwd(b->out, b->a, ROWS, 256); }
static void r_sm_bwd(void *a) { kbuf *b = a; b->k->softmax_bwd(b->dx, b->out, b->b, ROWS, 256); }
static void r_attn_fwd(void *a)
{
    kbuf *b = a;
    b->k->attn_fwd(b->T, 0, HS, b->q, HS, b->kk, b->v, HS, b->ao, HS, b->lse, 0.125f);
}
/* attention of one query at the last position of T = 256 (decode: the row path) */
static void r_attn_dec(void *a)
{
    kbuf *b = a;
    b->k->attn_fwd(1, b->T - 1, HS, b->q + (b->T - 1) * HS, HS, b->kk, b->v, HS, b->ao, HS,
                   b->lse, 0.125f);
}
static void r_attn_bwd(void *a)
{
    kbuf *b = a;
    b->k->attn_bwd(b->T, HS, b->q, b->kk, b->v, HS, b->ao, b->b, HS, b->lse, b->dq, b->dk,
                   b->dv, HS, 0.125f, b->scratch);
}
static void r_ce_fwd(void *a)
{
    kbuf *b = a;
    b->k->ce_fwd(CE_ROWS, V, b->logits, VP, b->target, b->loss, b->celse);
}
static void r_ce_bwd(void *a)
{
    kbuf *b = a;
    b->k->ce_bwd(CE_ROWS, V, VP, b->dlogits, b->logits, VP, b->target, b->celse, b->dloss);
}
static void r_embed_fwd(void *a)
{
    kbuf *b = a;
    b->k->embed_fwd(ROWS, ROWS, C, 0, C, b->tok, b->wte, b->wpe, b->out);
}
static void r_embed_bwd(void *a)
{
    kbuf *b = a;
    b->k->embed_bwd(ROWS, ROWS, C, 0, C, b->tok, b->a, b->wte, b->wpe);
}
static void r_adamw(void *a)
{
    kbuf *b = a;
    b->k->adamw(NOPT, b->p, b->g, b->m, b->vv, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 0.3f, 1.0f);
}
static void r_adamw_sumsq(void *a)
{
    kbuf *b = a;
    b->sink += b->k->adamw_sumsq(NOPT, b->p, b->g, b->m, b->vv, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f,
                                 0.5f, 0.3f, 1.0f);
}
static void r_sumsq(void *a) { kbuf *b = a; b->sink += b->k->sumsq(NOPT, b->g); }
static void r_to_bf16(void *a) { kbuf *b = a; b->k->f32_to_bf16(b->p, b->h, NOPT); }
static void r_from_bf16(void *a) { kbuf *b = a; b->k->bf16_to_f32(b->h, b->m, NOPT); }
/* Llama ops: RMSNorm at GPT-2 small's width, RoPE on the q rows of 12 heads of 64 (in place
 * on out: rotations keep the values bounded), SwiGLU at a hidden width of 2048 */
static void r_rms_fwd(void *a)
{
    kbuf *b = a;
    b->k->rmsnorm_fwd(b->out, b->rrstd, b->a, b->w, ROWS, C, 1e-5f);
}
static void r_rms_bwd(void *a)
{
    kbuf *b = a;
    b->k->rmsnorm_bwd(b->dx, b->dw, b->b, b->a, b->w, b->rrstd, ROWS, C);
}
static void r_rope_fwd(void *a)
{
    kbuf *b = a;
    b->k->rope_fwd(b->out, ROWS, NHEAD, HS, C, b->cs, b->sn);
}
static void r_rope_bwd(void *a)
{
    kbuf *b = a;
    b->k->rope_bwd(b->out, ROWS, NHEAD, HS, C, b->cs, b->sn);
}
static void r_swiglu_fwd(void *a) { kbuf *b = a; b->k->swiglu_fwd(b->out, b->gu, ROWS, HFF); }
static void r_swiglu_bwd(void *a)
{
    kbuf *b = a;
    b->k->swiglu_bwd(b->dgu, b->b, b->gu, ROWS, HFF);
}

typedef struct kop {
    const char *name, *shape;
    void (*fn)(void *);
    int64_t T;    /* attention length, 0 otherwise */
    double bytes; /* bytes moved per call (0: report GFLOP/s) */
    double flops;
} kop;

#define F 4.0
static const kop kops[] = {
    {"add", "256x768", r_add, 0, 3 * F * ROWS * C, 0},
    {"bias_fwd", "256x768", r_bias_fwd, 0, 2 * F * ROWS * C, 0},
    {"bias_bwd", "256x768", r_bias_bwd, 0, F * ROWS * C, 0},
    {"gelu_fwd", "256x3072", r_gelu_fwd, 0, 2 * F * ROWS * C4, 0},
    {"gelu_bwd", "256x3072", r_gelu_bwd, 0, 4 * F * ROWS * C4, 0},
    {"layernorm_fwd", "256x768", r_ln_fwd, 0, 2 * F * ROWS * C, 0},
    {"layernorm_bwd", "256x768", r_ln_bwd, 0, 4 * F * ROWS * C, 0},
    {"softmax_fwd", "256x256", r_sm_fwd, 0, 2 * F * ROWS * 256, 0},
    {"softmax_bwd", "256x256", r_sm_bwd, 0, 4 * F * ROWS * 256, 0},
    /* causal: QK^T and PV over T*T/2 pairs of hs-vectors; backward recomputes S and adds
     * dV, dP, dQ, dK: 5 such products */
    {"attn_fwd", "T=64 hs=64", r_attn_fwd, 64, 0, 2.0 * 64 * 64 * HS},
    {"attn_fwd", "T=256 hs=64", r_attn_fwd, 256, 0, 2.0 * 256 * 256 * HS},
    {"attn_dec", "t0=255 hs=64", r_attn_dec, 256, 0, 2.0 * 2 * 256 * HS},
    {"attn_bwd", "T=64 hs=64", r_attn_bwd, 64, 0, 5.0 * 64 * 64 * HS},
    {"attn_bwd", "T=256 hs=64", r_attn_bwd, 256, 0, 5.0 * 256 * 256 * HS},
    {"ce_fwd", "16x50257", r_ce_fwd, 0, F * CE_ROWS * V, 0},
    {"ce_bwd", "16x50257", r_ce_bwd, 0, 2 * F * CE_ROWS * VP, 0},
    {"embed_fwd", "256x768", r_embed_fwd, 0, 3 * F * ROWS * C, 0},
    {"embed_bwd", "256x768", r_embed_bwd, 0, 5 * F * ROWS * C, 0},
    {"adamw", "n=1M", r_adamw, 0, 7 * F * NOPT, 0},
    {"adamw_sumsq", "n=1M", r_adamw_sumsq, 0, 7 * F * NOPT, 0},
    {"sumsq", "n=1M", r_sumsq, 0, F * NOPT, 0},
    {"f32_to_bf16", "n=1M", r_to_bf16, 0, 6.0 * NOPT, 0},
    {"bf16_to_f32", "n=1M", r_from_bf16, 0, 6.0 * NOPT, 0},
    {"rmsnorm_fwd", "256x768", r_rms_fwd, 0, 2 * F * ROWS * C, 0},
    {"rmsnorm_bwd", "256x768", r_rms_bwd, 0, 4 * F * ROWS * C, 0},
    /* the rows in place plus the two tables (ROWS x HS each) */
    {"rope_fwd", "256x12x64", r_rope_fwd, 0, 2 * F * ROWS * C + 2 * F * ROWS * HS, 0},
    {"rope_bwd", "256x12x64", r_rope_bwd, 0, 2 * F * ROWS * C + 2 * F * ROWS * HS, 0},
    /* forward: gate|up in, out; backward: gate|up and dout in, dgate|dup read and written */
    {"swiglu_fwd", "256x2048", r_swiglu_fwd, 0, 3 * F * ROWS * HFF, 0},
    {"swiglu_bwd", "256x2048", r_swiglu_bwd, 0, 7 * F * ROWS * HFF, 0},
};

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* best CPU seconds per call of fn(arg): one warm-up call, then batches of calls (enough
 * for >= 1 ms each, far above the clock's granularity: a lone 2 us call can read as 0)
 * until min_time of wall time has passed (at least 5 batches); the best batch mean. */
static double cpu_time_best(void (*fn)(void *), void *arg, double min_time)
{
    fn(arg);
    int batch = 1;
    for (;;) {
        double t0 = thread_cpu();
        for (int i = 0; i < batch; i++)
            fn(arg);
        if (thread_cpu() - t0 >= 1e-3 || batch >= (1 << 20))
            break;
        batch *= 2;
    }
    double best = INFINITY, start = bench_now();
    for (int reps = 0; reps < 5 || bench_now() - start < min_time; reps++) {
        double t0 = thread_cpu();
        for (int i = 0; i < batch; i++)
            fn(arg);
        double dt = (thread_cpu() - t0) / batch;
        if (dt < best)
            best = dt;
    }
    return best;
}

static void fill(float *x, int64_t n, uint32_t seed, float scale)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = ((float)(seed >> 8) * (1.0f / 16777216.0f) - 0.5f) * scale;
    }
}

static float *fnew(int64_t n, uint32_t seed, float scale)
{
    float *x = parlm_alloc((size_t)n, 4);
    if (x)
        fill(x, n, seed, scale);
    return x;
}

int bench_kernels(bench_ctx *ctx)
{
    parlm_kernels scalar;
    const parlm_kernels *cur = parlm_kern();
    if (parlm_kernels_for(PARLM_ISA_SCALAR, &scalar) != PARLM_OK) {
        fprintf(stderr, "parlm-bench kernels: %s\n", parlm_last_error());
        return 1;
    }
    bench_section(ctx, "kernels: one thread, GB/s or GFLOP/s (ratio = speed-up over scalar)");
    const int64_t big = (int64_t)ROWS * C4, att = 256 * HS;
    kbuf b = {0};
    b.a = fnew(big, 1, 1), b.b = fnew(big, 2, 1), b.out = fnew(big, 3, 1), b.dx = fnew(big, 4, 1);
    b.w = fnew(C, 5, 1), b.bias = fnew(C, 6, 1), b.mean = fnew(ROWS, 7, 1);
    b.rstd = fnew(ROWS, 8, 1), b.dw = fnew(C, 9, 1), b.db = fnew(C4, 10, 1);
    b.q = fnew(att, 11, 1), b.kk = fnew(att, 12, 1), b.v = fnew(att, 13, 1);
    b.ao = fnew(att, 14, 1), b.dq = fnew(att, 15, 1), b.dk = fnew(att, 16, 1);
    b.dv = fnew(att, 17, 1), b.lse = fnew(256, 18, 1), b.scratch = fnew(256, 19, 1);
    b.logits = fnew((int64_t)CE_ROWS * VP, 20, 8), b.dlogits = fnew((int64_t)CE_ROWS * VP, 21, 1);
    b.loss = fnew(CE_ROWS, 22, 1), b.celse = fnew(CE_ROWS, 23, 1), b.dloss = fnew(CE_ROWS, 24, 1);
    b.wte = fnew((int64_t)V * C, 25, 1), b.wpe = fnew((int64_t)1024 * C, 26, 1);
    b.p = fnew(NOPT, 27, 1), b.g = fnew(NOPT, 28, 1), b.m = fnew(NOPT, 29, 0.01f);
    b.vv = fnew(NOPT, 30, 0.01f);
    b.tok = parlm_alloc(ROWS, 4), b.target = parlm_alloc(CE_ROWS, 4);
    b.h = parlm_alloc(NOPT, 2);
    b.gu = fnew((int64_t)ROWS * 2 * HFF, 33, 8), b.dgu = fnew((int64_t)ROWS * 2 * HFF, 34, 1);
    b.cs = fnew((int64_t)ROWS * HS, 35, 1), b.sn = fnew((int64_t)ROWS * HS, 36, 1);
    b.rrstd = fnew(ROWS, 37, 1);
    int rc = 0;
    float *all[] = {b.a, b.b, b.out, b.dx, b.w, b.bias, b.mean, b.rstd, b.dw, b.db, b.q, b.kk,
                    b.v, b.ao, b.dq, b.dk, b.dv, b.lse, b.scratch, b.logits, b.dlogits, b.loss,
                    b.celse, b.dloss, b.wte, b.wpe, b.p, b.g, b.m, b.vv, b.gu, b.dgu, b.cs, b.sn,
                    b.rrstd};
    int nall = (int)(sizeof all / sizeof all[0]);
    for (int i = 0; i < nall; i++)
        rc |= all[i] == NULL;
    if (rc || !b.tok || !b.target || !b.h) {
        fprintf(stderr, "parlm-bench kernels: out of memory\n");
        rc = 1;
        goto done;
    }
    if (parlm_rope_table(b.cs, b.sn, ROWS, HS, 10000.0, 1.0) != PARLM_OK) {
        fprintf(stderr, "parlm-bench kernels: %s\n", parlm_last_error());
        rc = 1;
        goto done;
    }
    bench_random_tokens(b.tok, ROWS, V, 31);
    bench_random_tokens(b.target, CE_ROWS, V, 32);
    for (int i = 0; i < NOPT; i++)
        b.vv[i] = b.vv[i] * b.vv[i]; /* second moments are >= 0 */
    /* lse and out of a real forward pass, so the backward passes see consistent inputs */
    b.k = &scalar;
    b.T = 256;
    r_attn_fwd(&b);
    r_ce_fwd(&b);
    r_ln_fwd(&b);
    r_sm_fwd(&b);
    r_rms_fwd(&b);
    int nops = (int)(sizeof kops / sizeof kops[0]);
    double tmin = ctx->min_time;
    for (int i = 0; i < nops; i++) {
        const kop *o = &kops[i];
        char shape[64];
        snprintf(shape, sizeof shape, "%s %s", o->name, o->shape);
        b.T = o->T;
        b.k = &scalar;
        double ts = cpu_time_best(o->fn, &b, tmin);
        double t = ts;
        if (cur->name && strcmp(cur->name, "scalar")) {
            b.k = cur;
            t = cpu_time_best(o->fn, &b, tmin);
        }
        bench_row row = {.bench = "kernels", .impl = cur->name, .shape = shape, .threads = 1,
                         .seconds = t, .ratio = ts / t, .baseline = "scalar"};
        if (o->bytes > 0)
            row.gbs = o->bytes / t * 1e-9;
        else
            row.gflops = o->flops / t * 1e-9;
        bench_report(ctx, &row);
    }
    if (b.sink == 12345.0) /* keeps the reductions' results live */
        printf(" ");
done:
    for (int i = 0; i < nall; i++)
        parlm_free(all[i]);
    parlm_free(b.tok);
    parlm_free(b.target);
    parlm_free(b.h);
    return rc;
}
