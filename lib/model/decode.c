/* lib/model/decode.c — one decode step of GPT-2 (one token against the KV cache) in a single
 * OpenMP parallel region. A token is ~50 matrix-vector products of 0.1-2 ms each, bound
 * by streaming the weights; a parallel region per product, with serial layernorms and
 * adds in between, pays a fork and a join each time and leaves threads idle. Here the
 * team forks once per token and meets at 4-5 barriers per layer: each thread normalizes
 * the whole residual row itself (C floats cost less than a barrier), computes its slice
 * of each product's output rows and applies bias, GELU and the residual add to that
 * slice. When the threads divide the heads, a thread computes q, k, v of its own heads
 * and their attention without waiting for the others. */
#include <math.h>
#include <omp.h>

#include "decode.h"
#include "../core/dispatch.h"
#include "../core/parallel.h"

static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

int64_t parlm_decode_scratch(int C, int NH, int threads)
{
    /* shared: q C, att C, tmp C, fch 4C, lse NH; per thread: a normalized row of C
     * (rows padded to 64 bytes so that threads never write the same cache line) */
    return (7 + (int64_t)threads) * round16(C) + round16(NH);
}

/* y = W[r0:r1, :] x (W has ic columns, f32 or bf16) */
static void gemv(const parlm_kernels *k, int bf16, const void *w, int64_t r0, int64_t r1,
                 int64_t ic, const float *x, float *y)
{
    if (r1 <= r0)
        return;
    if (bf16)
        k->bgemv_t(r1 - r0, ic, 1.0f, (const uint16_t *)w + r0 * ic, ic, x, 0.0f, y);
    else
        k->sgemv_t(r1 - r0, ic, 1.0f, (const float *)w + r0 * ic, ic, x, 0.0f, y);
}

/* rows [r0, r1) of qkv = W ln + b, each written where it is used: q into q, k and v
 * straight into the cache row of this position */
static void qkv_rows(const parlm_kernels *k, int bf16, const parlm_decode_layer *w, int64_t C,
                     int64_t r0, int64_t r1, const float *ln, float *q, float *krow,
                     float *vrow)
{
    float *dst[3] = {q, krow, vrow};
    for (int64_t part = 0; part < 3; part++) {
        int64_t a = r0 > part * C ? r0 : part * C, b = r1 < (part + 1) * C ? r1 : (part + 1) * C;
        if (a >= b)
            continue;
        float *y = dst[part] + (a - part * C);
        gemv(k, bf16, w->qkvw, a, b, C, ln, y);
        k->bias_fwd(y, w->qkvb + a, 1, b - a);
    }
}

/* x[c0:c1] += W[c0:c1, :] in + b[c0:c1] (the residual add after a projection) */
static void project_add(const parlm_kernels *k, int bf16, const void *w, const float *b,
                        int64_t c0, int64_t c1, int64_t ic, const float *in, float *tmp,
                        float *x)
{
    if (c1 <= c0)
        return;
    gemv(k, bf16, w, c0, c1, ic, in, tmp + c0);
    k->bias_fwd(tmp + c0, b + c0, 1, c1 - c0);
    k->add(x + c0, x + c0, tmp + c0, c1 - c0);
}

parlm_status parlm_decode_step(const parlm_decode_model *d, float *x, int pos, float *logits,
                               float *scratch, int threads)
{
    const parlm_kernels *k = parlm_kern();
    const int64_t C = d->C, NH = d->NH, hs = C / NH, Cp = round16(C), T = d->max_seq;
    const int bf16 = d->bf16;
    float *q = scratch, *att = q + Cp, *tmp = att + Cp, *fch = tmp + Cp, *lse = fch + 4 * Cp;
    float *lnrows = lse + round16(NH);
    const float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        float *ln = lnrows + t * Cp, mean, rstd;
        int by_head = NH % nt == 0;
        int64_t h0, h1, a0, a1, c0, c1, f0, f1, v0, v1;
        parlm_split(NH, 1, t, nt, &h0, &h1);
        parlm_split(3 * C, 16, t, nt, &a0, &a1);
        parlm_split(C, 16, t, nt, &c0, &c1);
        parlm_split(4 * C, 16, t, nt, &f0, &f1);
        parlm_split(d->Vp, 16, t, nt, &v0, &v1);
        for (int l = 0; l < d->L; l++) {
            const parlm_decode_layer *w = &d->layers[l];
            float *kc = d->kv + (int64_t)l * 2 * T * C, *vc = kc + T * C;
            k->layernorm_fwd(ln, &mean, &rstd, x, w->ln1w, w->ln1b, 1, C);
            if (by_head) { /* q, k, v of heads h0..h1 */
                for (int64_t part = 0; part < 3; part++)
                    qkv_rows(k, bf16, w, C, part * C + h0 * hs, part * C + h1 * hs, ln, q,
                             kc + pos * C, vc + pos * C);
            } else {
                qkv_rows(k, bf16, w, C, a0, a1, ln, q, kc + pos * C, vc + pos * C);
#pragma omp barrier
            }
            for (int64_t h = h0; h < h1; h++)
                k->attn_fwd(1, pos, hs, q + h * hs, C, kc + h * hs, vc + h * hs, C, att + h * hs,
                            C, lse + h, scale);
#pragma omp barrier
            project_add(k, bf16, w->attprojw, w->attprojb, c0, c1, C, att, tmp, x);
#pragma omp barrier
            k->layernorm_fwd(ln, &mean, &rstd, x, w->ln2w, w->ln2b, 1, C);
            if (f1 > f0) {
                gemv(k, bf16, w->fcw, f0, f1, C, ln, fch + f0);
                k->bias_fwd(fch + f0, w->fcb + f0, 1, f1 - f0);
                k->gelu_fwd(fch + f0, fch + f0, f1 - f0);
            }
#pragma omp barrier
            project_add(k, bf16, w->fcprojw, w->fcprojb, c0, c1, 4 * C, fch, tmp, x);
#pragma omp barrier
        }
        k->layernorm_fwd(ln, &mean, &rstd, x, d->lnfw, d->lnfb, 1, C);
        gemv(k, bf16, d->lm_head, v0, v1, C, ln, logits + v0);
    }
    return PARLM_OK;
}
