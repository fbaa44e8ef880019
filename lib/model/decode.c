/* lib/model/decode.c — one decode step of GPT-2 (one token against the KV cache) in a single
 * OpenMP parallel region. A token is ~50 matrix-vector products of 0.1-2 ms each, bound
 * by streaming the weights; a parallel region per product, with serial layernorms and
 * adds in between, pays a fork and a join each time and leaves threads idle. Here the
 * team forks once per token and meets at 4-5 barriers per layer: each thread normalizes
 * the whole residual row itself (C floats cost less than a barrier), computes its slice
 * of each product's output rows and applies bias, GELU and the residual add to that
 * slice. When the threads divide the heads, a thread computes q, k, v of its own heads
 * and their attention without waiting for the others. On a tensor-parallel shard the same
 * region runs the shard's heads, hidden units and vocab rows; the partial projections are
 * summed over the group by the master thread between two barriers (cheaper than ending
 * and restarting the region: see tp_collective). With Q8_0 / Q4_0 weights each thread
 * quantizes a product's input row itself (8-bit blocks, as parlm_qgemv does): a row is
 * at most 4C floats, cheaper than a barrier, and the result stays the same bits for
 * every thread count. Quantized matrices are parlm's copy, as plain rows or repacked 8
 * rows at a time (simd/kernels.h), whichever parlm_qlayout measured faster, or a mapped
 * file's plain rows (a view: Llama's wk, wv and w_up are then matrices of their own):
 * either way a row's bits do not depend on which thread's slice holds it. */
#include <math.h>
#include <omp.h>

#include "decode.h"
#include "../core/dispatch.h"
#include "../core/parallel.h"
#include "parlm/quant.h"

static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

/* floats of one thread's quantized input row of the widest input, n floats */
static int64_t qrow_floats(int64_t n)
{
    return round16((n / PARLM_QBLOCK) * (int64_t)sizeof(parlm_q8x) / (int64_t)sizeof(float));
}

/* the widest product input: C, or the MLP's hidden units */
static int64_t widest_input(const parlm_decode_model *d)
{
    return d->F > d->C ? d->F : d->C;
}

int64_t parlm_decode_scratch(const parlm_decode_model *d, int threads)
{
    /* shared: q C, att C, tmp C, fch 2F (GPT-2: 4C of them), act F (Llama's SwiGLU
     * output), lse NH; per thread: a normalized row of C and a quantized input row (rows
     * padded to 64 bytes so that threads never write the same cache line) */
    const int64_t Cp = round16(d->C), Fp = round16(d->F);
    return (3 + (int64_t)threads) * Cp + 3 * Fp + round16(d->NH) +
           threads * qrow_floats(widest_input(d));
}

/* A product's input row: x, and with quantized weights x in 8-bit blocks (qx) */
typedef struct dec_in {
    const float *x;
    const parlm_q8x *qx;
    int row1; /* f32 / bf16 weights: the one-row GEMVs (parlm_gemv_mode) */
} dec_in;

/* The input row x of ic floats for the weight type: quantizes it into this thread's qbuf
 * when the weights are Q8_0 / Q4_0 (ic is then a multiple of 32). */
static dec_in dec_input(const parlm_kernels *k, int row1, int wtype, const float *x, int64_t ic,
                        parlm_q8x *qbuf)
{
    dec_in in = {x, NULL, row1};
    if (wtype == PARLM_WT_Q8_0 || wtype == PARLM_WT_Q4_0) {
        k->q8_quantize(ic, x, qbuf);
        in.qx = qbuf;
    }
    return in;
}

/* y = W[r0:r1, :] x (W has ic columns, stored as wtype; quantized: repacked 8 rows at a
 * time when qr8, else plain rows) */
static void gemv(const parlm_kernels *k, int wtype, int qr8, const void *w, int64_t r0,
                 int64_t r1, int64_t ic, dec_in in, float *y)
{
    if (r1 <= r0)
        return;
    if ((wtype == PARLM_WT_Q8_0 || wtype == PARLM_WT_Q4_0) && qr8) {
        (wtype == PARLM_WT_Q8_0 ? k->q8_0r_gemv : k->q4_0r_gemv)(r0, r1, ic, w, in.qx, 1.0f,
                                                                 0.0f, y);
    } else if (wtype == PARLM_WT_Q8_0 || wtype == PARLM_WT_Q4_0) {
        int64_t ldw = ic / PARLM_QBLOCK * (wtype == PARLM_WT_Q8_0 ? 34 : 18);
        (wtype == PARLM_WT_Q8_0 ? k->q8_0_gemv : k->q4_0_gemv)(
            r1 - r0, ic, (const uint8_t *)w + r0 * ldw, ldw, in.qx, 1.0f, 0.0f, y);
    } else if (wtype == PARLM_WT_BF16) {
        (in.row1 ? k->bgemv_t1 : k->bgemv_t)(r1 - r0, ic, 1.0f, (const uint16_t *)w + r0 * ic,
                                             ic, in.x, 0.0f, y);
    } else {
        (in.row1 ? k->sgemv_t1 : k->sgemv_t)(r1 - r0, ic, 1.0f, (const float *)w + r0 * ic, ic,
                                             in.x, 0.0f, y);
    }
}

/* rows [r0, r1) of qkv = W ln + b (W has parts of cq (q), ckv (k) and ckv (v) rows and C
 * columns; b NULL: none), each written where it is used: q into q, k and v straight into
 * the cache row of this position */
static void qkv_rows(const parlm_kernels *k, int wtype, int qr8, const parlm_decode_layer *w,
                     int64_t cq, int64_t ckv, int64_t C, int64_t r0, int64_t r1, dec_in ln,
                     float *q, float *krow, float *vrow)
{
    float *dst[3] = {q, krow, vrow};
    const void *own[3] = {NULL, w->wk, w->wv}; /* k and v as matrices of their own */
    const int64_t start[4] = {0, cq, cq + ckv, cq + 2 * ckv};
    for (int64_t part = 0; part < 3; part++) {
        int64_t a = r0 > start[part] ? r0 : start[part];
        int64_t b = r1 < start[part + 1] ? r1 : start[part + 1];
        if (a >= b)
            continue;
        float *y = dst[part] + (a - start[part]);
        if (own[part])
            gemv(k, wtype, qr8, own[part], a - start[part], b - start[part], C, ln, y);
        else
            gemv(k, wtype, qr8, w->qkvw, a, b, C, ln, y);
        if (w->qkvb)
            k->bias_fwd(y, w->qkvb + a, 1, b - a);
    }
}

/* x[c0:c1] += tmp[c0:c1] + b[c0:c1] (the residual add after a projection; b NULL: no bias) */
static void bias_add(const parlm_kernels *k, const float *b, int64_t c0, int64_t c1, float *tmp,
                     float *x)
{
    if (c1 <= c0)
        return;
    if (b)
        k->bias_fwd(tmp + c0, b + c0, 1, c1 - c0);
    k->add(x + c0, x + c0, tmp + c0, c1 - c0);
}

/* The group's collective on buf, called by the master thread while the others wait at
 * the barriers (the first one makes every thread's part of buf complete). Measured with 2
 * threads (libgomp, Cascade Lake, best of 3): the two barriers cost 2.0 us, ending the
 * region and forking a new one 2.6 us, and the threads would lose their slices. A failure is
 * kept in *st and later collectives are skipped: the team still runs to the end, so no
 * thread is left at a barrier. */
static void tp_collective(const parlm_decode_model *d, int gather, float *buf, int64_t n,
                          parlm_status *st)
{
#pragma omp barrier
#pragma omp master
    if (*st == PARLM_OK)
        *st = gather ? d->comm->all_gather(d->comm->arg, buf, n)
                     : d->comm->allreduce_sum(d->comm->arg, buf, n);
#pragma omp barrier
}

/* The normalized residual row: LayerNorm (GPT-2) or RMSNorm (Llama, b NULL) */
static void norm_row(const parlm_kernels *k, const parlm_decode_model *d, float *out,
                     const float *x, const float *w, const float *b)
{
    float mean, rstd;
    if (d->llama)
        k->rmsnorm_fwd(out, &rstd, x, w, 1, d->C, d->eps);
    else
        k->layernorm_fwd(out, &mean, &rstd, x, w, b, 1, d->C);
}

parlm_status parlm_decode_step(const parlm_decode_model *d, float *x, int pos, float *logits,
                               float *scratch, int threads)
{
    const parlm_kernels *k = parlm_kern();
    const int tp = d->tp > 1 ? d->tp : 1;
    /* local sizes: attention width (query heads), key/value heads and width, hidden units
     * and vocab rows of this shard; G query heads share a key/value head */
    const int64_t C = d->C, CL = C / tp, NHL = d->NH / tp, hs = C / d->NH, FL = d->F / tp;
    const int64_t NKVL = d->NKV / tp, CKV = NKVL * hs, G = NHL / NKVL;
    const int64_t VL = d->Vp / tp, Cp = round16(C), Fp = round16(d->F), T = d->max_seq;
    const int wt = d->wtype, qr8 = d->qr8, llama = d->llama;
    float *q = scratch, *att = q + Cp, *tmp = att + Cp, *fch = tmp + Cp, *act = fch + 2 * Fp;
    float *lse = act + Fp, *lnrows = lse + round16(d->NH), *qrows = lnrows + threads * Cp;
    float *mylogits = logits + (tp > 1 ? d->tp_rank * VL : 0);
    const float scale = 1.0f / sqrtf((float)hs);
    const float *rcs = llama ? d->rope_cos + (int64_t)pos * hs : NULL;
    const float *rsn = llama ? d->rope_sin + (int64_t)pos * hs : NULL;
    const int row1 = parlm_gemv_mode_current(NULL) == PARLM_GEMV_ROW1;
    parlm_status st = PARLM_OK;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        float *ln = lnrows + t * Cp;
        parlm_q8x *qbuf = (parlm_q8x *)(qrows + t * qrow_floats(widest_input(d)));
        /* by key/value head: a thread computes q, k, v of its heads and their attention
         * without waiting for the others */
        int by_head = NKVL % nt == 0;
        int64_t g0, g1, a0, a1, c0, c1, f0, f1, v0, v1, h0, h1;
        parlm_split(NKVL, 1, t, nt, &g0, &g1);
        parlm_split(CL + 2 * CKV, 16, t, nt, &a0, &a1);
        parlm_split(C, 16, t, nt, &c0, &c1);
        parlm_split(FL, 16, t, nt, &f0, &f1);
        parlm_split(VL, 16, t, nt, &v0, &v1);
        if (by_head) /* the query heads of key/value heads g0 .. g1 */
            h0 = g0 * G, h1 = g1 * G;
        else
            parlm_split(NHL, 1, t, nt, &h0, &h1);
        for (int l = 0; l < d->L; l++) {
            const parlm_decode_layer *w = &d->layers[l];
            float *kc = d->kv + (int64_t)l * 2 * T * CKV, *vc = kc + T * CKV;
            float *krow = kc + pos * CKV, *vrow = vc + pos * CKV;
            norm_row(k, d, ln, x, w->ln1w, w->ln1b);
            dec_in in = dec_input(k, row1, wt, ln, C, qbuf);
            if (by_head) { /* q of heads h0..h1, k and v of heads g0..g1 */
                qkv_rows(k, wt, qr8, w, CL, CKV, C, h0 * hs, h1 * hs, in, q, krow, vrow);
                for (int64_t part = 1; part < 3; part++)
                    qkv_rows(k, wt, qr8, w, CL, CKV, C, CL + (part - 1) * CKV + g0 * hs,
                             CL + (part - 1) * CKV + g1 * hs, in, q, krow, vrow);
                if (llama && g1 > g0) { /* rotate this position's q and k */
                    k->rope_fwd(q + h0 * hs, 1, h1 - h0, hs, CL, rcs, rsn);
                    k->rope_fwd(krow + g0 * hs, 1, g1 - g0, hs, CKV, rcs, rsn);
                }
            } else {
                qkv_rows(k, wt, qr8, w, CL, CKV, C, a0, a1, in, q, krow, vrow);
#pragma omp barrier
                if (llama) { /* q heads h0..h1, k heads g0..g1 */
                    if (h1 > h0)
                        k->rope_fwd(q + h0 * hs, 1, h1 - h0, hs, CL, rcs, rsn);
                    if (g1 > g0)
                        k->rope_fwd(krow + g0 * hs, 1, g1 - g0, hs, CKV, rcs, rsn);
#pragma omp barrier
                }
            }
            for (int64_t h = h0; h < h1; h++)
                k->attn_fwd(1, pos, hs, q + h * hs, CL, kc + h / G * hs, vc + h / G * hs, CKV,
                            att + h * hs, CL, lse + h, scale);
#pragma omp barrier
            if (c1 > c0) /* this shard's part of the output projection */
                gemv(k, wt, qr8, w->attprojw, c0, c1, CL,
                     dec_input(k, row1, wt, att, CL, qbuf), tmp + c0);
            if (tp > 1)
                tp_collective(d, 0, tmp, C, &st);
            bias_add(k, w->attprojb, c0, c1, tmp, x);
#pragma omp barrier
            norm_row(k, d, ln, x, w->ln2w, w->ln2b);
            if (f1 > f0 && llama) {
                /* gate and up rows of hidden units f0..f1 side by side in this thread's
                 * part of fch, then SwiGLU into act */
                in = dec_input(k, row1, wt, ln, C, qbuf);
                float *gu = fch + 2 * f0;
                gemv(k, wt, qr8, w->fcw, f0, f1, C, in, gu);
                if (w->wup)
                    gemv(k, wt, qr8, w->wup, f0, f1, C, in, gu + (f1 - f0));
                else
                    gemv(k, wt, qr8, w->fcw, FL + f0, FL + f1, C, in, gu + (f1 - f0));
                k->swiglu_fwd(act + f0, gu, 1, f1 - f0);
            } else if (f1 > f0) {
                gemv(k, wt, qr8, w->fcw, f0, f1, C, dec_input(k, row1, wt, ln, C, qbuf), fch + f0);
                k->bias_fwd(fch + f0, w->fcb + f0, 1, f1 - f0);
                k->gelu_fwd(fch + f0, fch + f0, f1 - f0);
            }
#pragma omp barrier
            if (c1 > c0)
                gemv(k, wt, qr8, w->fcprojw, c0, c1, FL,
                     dec_input(k, row1, wt, llama ? act : fch, FL, qbuf), tmp + c0);
            if (tp > 1)
                tp_collective(d, 0, tmp, C, &st);
            bias_add(k, w->fcprojb, c0, c1, tmp, x);
#pragma omp barrier
        }
        norm_row(k, d, ln, x, d->lnfw, d->lnfb);
        /* the head's rows, then 0 for the padding rows it does not hold */
        const int64_t hr = d->head_rows > 0 && d->head_rows < VL ? d->head_rows : VL;
        const int64_t e1 = v1 < hr ? v1 : hr;
        if (e1 > v0)
            gemv(k, wt, qr8, d->lm_head, v0, e1, C, dec_input(k, row1, wt, ln, C, qbuf),
                 mylogits + v0);
        for (int64_t v = v0 > hr ? v0 : hr; v < v1; v++)
            mylogits[v] = 0.0f;
        if (tp > 1) /* every rank gets the whole row: the same token is picked everywhere */
            tp_collective(d, 1, logits, VL, &st);
    }
    return st;
}
