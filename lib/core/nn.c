/* lib/core/nn.c — public wrappers of the transformer kernels: argument checks at the boundary,
 * then OpenMP over independent units — (batch, head) for attention, rows for the loss,
 * column slices for the embedding scatter (so duplicate tokens never race), fixed slices
 * for AdamW and the norm — calling the kernel set in use on each. */
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "../../base/error.h"
#include "parallel.h"
#include "parlm/nn.h"
#include "parlm/tensor.h"

#define MAX_HS 256

static parlm_status check_attn(const char *fn, int B, int T, int C, int NH, int NKV)
{
    if (B < 1 || T < 1 || C < 1 || NH < 1 || NKV < 1)
        return parlm_error(PARLM_EINVAL, "%s: B, T, C, NH, NKV must be >= 1 (got %d, %d, %d, %d, "
                           "%d)", fn, B, T, C, NH, NKV);
    if (C % NH)
        return parlm_error(PARLM_EINVAL, "%s: C = %d is not a multiple of NH = %d", fn, C, NH);
    if (NH % NKV)
        return parlm_error(PARLM_EINVAL, "%s: NH = %d query heads are not a multiple of NKV = %d "
                           "key/value heads", fn, NH, NKV);
    if (C / NH > MAX_HS)
        return parlm_error(PARLM_EINVAL, "%s: head size %d exceeds %d", fn, C / NH, MAX_HS);
    return PARLM_OK;
}

/* Grouped-query attention is a mapping of heads, not a kernel: query head h reads the
 * key/value head h / (NH/NKV). The kernels see one (batch, head) with its row strides,
 * so every kernel set runs GQA through the same calls as multi-head attention. */

parlm_status parlm_attention_forward_gqa(float *out, float *lse, const float *qkv, int B, int T,
                                         int C, int NH, int NKV)
{
    if (!out || !lse || !qkv)
        return parlm_error(PARLM_EINVAL, "parlm_attention_forward: null buffer");
    parlm_status st = check_attn("parlm_attention_forward", B, T, C, NH, NKV);
    if (st != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int64_t hs = C / NH, G = NH / NKV, Ckv = NKV * hs, W = C + 2 * Ckv;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for schedule(dynamic, 1) if ((int64_t)B * NH > 1 && T > 8)
    for (int64_t u = 0; u < (int64_t)B * NH; u++) {
        int64_t b = u / NH, h = u % NH;
        const float *row = qkv + b * T * W, *kv = row + C + (h / G) * hs;
        k->attn_fwd(T, 0, hs, row + h * hs, W, kv, kv + Ckv, W, out + b * T * C + h * hs, C,
                    lse + u * T, scale);
    }
    return PARLM_OK;
}

parlm_status parlm_attention_forward(float *out, float *lse, const float *qkv, int B, int T,
                                     int C, int NH)
{
    return parlm_attention_forward_gqa(out, lse, qkv, B, T, C, NH, NH);
}

parlm_status parlm_attention_backward_gqa(float *dqkv, const float *dout, const float *qkv,
                                          const float *out, const float *lse, int B, int T,
                                          int C, int NH, int NKV)
{
    if (!dqkv || !dout || !qkv || !out || !lse)
        return parlm_error(PARLM_EINVAL, "parlm_attention_backward: null buffer");
    parlm_status st = check_attn("parlm_attention_backward", B, T, C, NH, NKV);
    if (st != PARLM_OK)
        return st;
    int nt = omp_get_max_threads();
    float *scratch = parlm_alloc((size_t)nt * (size_t)T, sizeof(float));
    if (!scratch)
        return parlm_error(PARLM_ENOMEM, "parlm_attention_backward: scratch of %d x %d floats",
                           nt, T);
    const parlm_kernels *k = parlm_kern();
    int64_t hs = C / NH, G = NH / NKV, Ckv = NKV * hs, W = C + 2 * Ckv;
    float scale = 1.0f / sqrtf((float)hs);
    /* one unit per (batch, key/value head): the G query heads that share its dk, dv
     * accumulate into them one after another, so no two threads write the same rows and
     * the sums have a fixed order */
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t u = 0; u < (int64_t)B * NKV; u++) {
        int64_t b = u / NKV, kh = u % NKV, off = b * T * W, koff = off + C + kh * hs;
        float *sc = scratch + (size_t)omp_get_thread_num() * (size_t)T;
        for (int64_t h = kh * G; h < (kh + 1) * G; h++) {
            int64_t qoff = off + h * hs, ooff = b * T * C + h * hs;
            k->attn_bwd(T, hs, qkv + qoff, qkv + koff, qkv + koff + Ckv, W, out + ooff,
                        dout + ooff, C, lse + (b * NH + h) * T, dqkv + qoff, dqkv + koff,
                        dqkv + koff + Ckv, W, scale, sc);
        }
    }
    parlm_free(scratch);
    return PARLM_OK;
}

parlm_status parlm_attention_backward(float *dqkv, const float *dout, const float *qkv,
                                      const float *out, const float *lse, int B, int T, int C,
                                      int NH)
{
    return parlm_attention_backward_gqa(dqkv, dout, qkv, out, lse, B, T, C, NH, NH);
}

parlm_status parlm_attention_cached_gqa(float *out, const float *q, int64_t ldq,
                                        const float *kcache, const float *vcache, int t0, int tq,
                                        int C, int NH, int NKV)
{
    if (!out || !q || !kcache || !vcache)
        return parlm_error(PARLM_EINVAL, "parlm_attention_cached: null buffer");
    parlm_status st = check_attn("parlm_attention_cached", 1, tq, C, NH, NKV);
    if (st != PARLM_OK)
        return st;
    if (t0 < 0 || ldq < C)
        return parlm_error(PARLM_EINVAL, "parlm_attention_cached: t0 = %d, ldq = %lld < C = %d",
                           t0, (long long)ldq, C);
    if (t0 > INT_MAX - tq) /* positions t0 + i must fit an int (the kernels compare them) */
        return parlm_error(PARLM_EINVAL, "parlm_attention_cached: t0 + tq = %d + %d overflows",
                           t0, tq);
    float *lse = parlm_alloc((size_t)NH * (size_t)tq, sizeof(float));
    if (!lse)
        return parlm_error(PARLM_ENOMEM, "parlm_attention_cached: out of memory");
    const parlm_kernels *k = parlm_kern();
    int64_t hs = C / NH, G = NH / NKV, Ckv = NKV * hs;
    float scale = 1.0f / sqrtf((float)hs);
    /* prefill: heads x query blocks; decode (tq = 1): heads. Threads pay off from ~32K
     * multiply-adds per call (decode of 12 heads of 64 over 64 positions: 1.7x on 2) */
    int64_t qblk = tq > 64 ? 64 : tq, nblk = (tq + qblk - 1) / qblk;
    int64_t work = ((int64_t)t0 + tq) * tq * C;
#pragma omp parallel for schedule(dynamic, 1) if ((int64_t)NH * nblk > 1 && work > (1 << 15))
    for (int64_t u = 0; u < (int64_t)NH * nblk; u++) {
        int64_t h = u / nblk, i0 = (u % nblk) * qblk, n = tq - i0 < qblk ? tq - i0 : qblk;
        k->attn_fwd(n, t0 + i0, hs, q + i0 * ldq + h * hs, ldq, kcache + (h / G) * hs,
                    vcache + (h / G) * hs, Ckv, out + i0 * C + h * hs, C, lse + h * tq + i0,
                    scale);
    }
    parlm_free(lse);
    return PARLM_OK;
}

parlm_status parlm_attention_cached(float *out, const float *q, int64_t ldq, const float *kcache,
                                    const float *vcache, int t0, int tq, int C, int NH)
{
    return parlm_attention_cached_gqa(out, q, ldq, kcache, vcache, t0, tq, C, NH, NH);
}

static parlm_status check_targets(const char *fn, const int32_t *targets, int64_t N, int V)
{
    for (int64_t r = 0; r < N; r++)
        if (targets[r] < 0 || targets[r] >= V)
            return parlm_error(PARLM_EINVAL, "%s: targets[%lld] = %d is outside [0, %d)", fn,
                               (long long)r, targets[r], V);
    return PARLM_OK;
}

parlm_status parlm_crossentropy_forward(float *losses, float *lse, const float *logits,
                                        const int32_t *targets, int64_t N, int V, int Vp)
{
    if (!losses || !lse || !logits || !targets)
        return parlm_error(PARLM_EINVAL, "parlm_crossentropy_forward: null buffer");
    if (N < 1 || V < 1 || Vp < V)
        return parlm_error(PARLM_EINVAL, "parlm_crossentropy_forward: need N, V >= 1 and Vp >= V "
                           "(got N=%lld V=%d Vp=%d)", (long long)N, V, Vp);
    parlm_status st = check_targets("parlm_crossentropy_forward", targets, N, V);
    if (st != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int nt = parlm_threads_for(N * V, 1 << 16, omp_get_max_threads());
#pragma omp parallel num_threads(nt)
    {
        int64_t r0, r1;
        parlm_split(N, 1, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);
        if (r1 > r0)
            k->ce_fwd(r1 - r0, V, logits + r0 * Vp, Vp, targets + r0, losses + r0, lse + r0);
    }
    return PARLM_OK;
}

parlm_status parlm_crossentropy_backward(float *dlogits, const float *logits,
                                         const int32_t *targets, const float *lse,
                                         const float *dloss, int64_t N, int V, int Vp)
{
    if (!dlogits || !logits || !targets || !lse || !dloss)
        return parlm_error(PARLM_EINVAL, "parlm_crossentropy_backward: null buffer");
    if (N < 1 || V < 1 || Vp < V)
        return parlm_error(PARLM_EINVAL, "parlm_crossentropy_backward: need N, V >= 1 and Vp >= "
                           "V (got N=%lld V=%d Vp=%d)", (long long)N, V, Vp);
    parlm_status st = check_targets("parlm_crossentropy_backward", targets, N, V);
    if (st != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int nt = parlm_threads_for(N * V, 1 << 16, omp_get_max_threads());
#pragma omp parallel num_threads(nt)
    {
        int64_t r0, r1;
        parlm_split(N, 1, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);
        if (r1 > r0)
            k->ce_bwd(r1 - r0, V, Vp, dlogits + r0 * Vp, logits + r0 * Vp, Vp, targets + r0,
                      lse + r0, dloss + r0);
    }
    return PARLM_OK;
}

static parlm_status check_embed(const char *fn, const int32_t *tokens, int B, int T, int C, int V)
{
    if (B < 1 || T < 1 || C < 1 || V < 1)
        return parlm_error(PARLM_EINVAL, "%s: B, T, C, V must be >= 1", fn);
    return check_targets(fn, tokens, (int64_t)B * T, V);
}

parlm_status parlm_embedding_forward(float *out, const int32_t *tokens, const float *wte,
                                     const float *wpe, int B, int T, int C, int V)
{
    if (!out || !tokens || !wte || !wpe)
        return parlm_error(PARLM_EINVAL, "parlm_embedding_forward: null buffer");
    parlm_status st = check_embed("parlm_embedding_forward", tokens, B, T, C, V);
    if (st != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int64_t rows = (int64_t)B * T;
    int nt = parlm_threads_for(rows * C, 1 << 15, omp_get_max_threads());
#pragma omp parallel num_threads(nt)
    {
        int64_t r0, r1;
        parlm_split(rows, 1, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);
        /* rows r0..r1 start at position r0 % T: pass the shifted view */
        for (int64_t r = r0; r < r1;) {
            int64_t t = r % T, n = r1 - r < T - t ? r1 - r : T - t;
            k->embed_fwd(n, T, C, 0, C, tokens + r, wte, wpe + t * C, out + r * C);
            r += n;
        }
    }
    return PARLM_OK;
}

parlm_status parlm_embedding_backward(float *dwte, float *dwpe, const float *dout,
                                      const int32_t *tokens, int B, int T, int C, int V)
{
    if (!dwte || !dwpe || !dout || !tokens)
        return parlm_error(PARLM_EINVAL, "parlm_embedding_backward: null buffer");
    parlm_status st = check_embed("parlm_embedding_backward", tokens, B, T, C, V);
    if (st != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int64_t rows = (int64_t)B * T;
    int nt = parlm_threads_for(rows * C, 1 << 15, omp_get_max_threads());
#pragma omp parallel num_threads(nt)
    {
        int64_t c0, c1; /* each thread owns columns: no two threads touch one float */
        parlm_split(C, 16, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        if (c1 > c0)
            k->embed_bwd(rows, T, C, c0, c1, tokens, dout, dwte, dwpe);
    }
    return PARLM_OK;
}

parlm_status parlm_adamw_update(float *params, const float *grads, float *m, float *v, int64_t n,
                                const parlm_adamw_cfg *cfg, int64_t t, float grad_scale)
{
    if (!params || !grads || !m || !v || !cfg)
        return parlm_error(PARLM_EINVAL, "parlm_adamw_update: null argument");
    if (n < 1 || t < 1)
        return parlm_error(PARLM_EINVAL, "parlm_adamw_update: need n >= 1 and step t >= 1");
    if (!(cfg->beta1 >= 0 && cfg->beta1 < 1 && cfg->beta2 >= 0 && cfg->beta2 < 1 &&
          cfg->eps > 0 && isfinite(cfg->lr) && isfinite(grad_scale)))
        return parlm_error(PARLM_EINVAL, "parlm_adamw_update: need 0 <= beta < 1, eps > 0, "
                           "finite lr and grad_scale");
    const parlm_kernels *k = parlm_kern();
    float bc1 = 1.0f - powf(cfg->beta1, (float)t), bc2 = 1.0f - powf(cfg->beta2, (float)t);
    int nt = parlm_threads_for(n, 1 << 15, omp_get_max_threads());
#pragma omp parallel num_threads(nt)
    {
        int64_t i0, i1;
        parlm_split(n, 16, omp_get_thread_num(), omp_get_num_threads(), &i0, &i1);
        if (i1 > i0)
            k->adamw(i1 - i0, params + i0, grads + i0, m + i0, v + i0, cfg->lr, cfg->beta1,
                     cfg->beta2, cfg->eps, cfg->weight_decay, bc1, bc2, grad_scale);
    }
    return PARLM_OK;
}

parlm_status parlm_sumsq(const float *x, int64_t n, double *out)
{
    if (!x || !out || n < 1)
        return parlm_error(PARLM_EINVAL, "parlm_sumsq: null argument or n < 1");
    const parlm_kernels *k = parlm_kern();
    int nt = parlm_threads_for(n, 1 << 15, omp_get_max_threads());
    double part[256] = {0};
    if (nt > 256)
        nt = 256;
#pragma omp parallel num_threads(nt)
    {
        int64_t i0, i1;
        int t = omp_get_thread_num();
        parlm_split(n, 16, t, omp_get_num_threads(), &i0, &i1);
        if (i1 > i0)
            part[t] = k->sumsq(i1 - i0, x + i0);
    }
    double s = 0.0;
    for (int t = 0; t < nt; t++) /* fixed order: same thread count, same bits */
        s += part[t];
    *out = s;
    return PARLM_OK;
}

/* ---- vocab-parallel loss and embedding ------------------------------------------------ */

static parlm_status check_slice(const char *fn, int64_t N, int v0, int Vs, int V)
{
    if (N < 1 || V < 1 || Vs < 1 || v0 < 0 || v0 > INT_MAX - Vs)
        return parlm_error(PARLM_EINVAL, "%s: need N, V, Vs >= 1 and 0 <= v0 (got N=%lld V=%d "
                           "v0=%d Vs=%d)", fn, (long long)N, V, v0, Vs);
    return PARLM_OK;
}

/* real columns of the slice [v0, v0 + Vs) below V */
static int64_t slice_real(int v0, int Vs, int V)
{
    int64_t r = (int64_t)V - v0;
    return r < 0 ? 0 : r > Vs ? Vs : r;
}

#define VP_ROWS 256 /* rows per kernel call: their slice-local targets fit the stack */

/* slice-local targets of rows [r0, r0 + n): t - v0 inside the slice, -1 outside */
static void local_targets(int32_t *lt, const int32_t *targets, int64_t r0, int64_t n, int v0,
                          int64_t real)
{
    for (int64_t i = 0; i < n; i++) {
        int64_t t = (int64_t)targets[r0 + i] - v0;
        lt[i] = t >= 0 && t < real ? (int32_t)t : -1;
    }
}

parlm_status parlm_crossentropy_vp_partial(float *part, const float *logits,
                                           const int32_t *targets, int64_t N, int v0, int Vs,
                                           int V)
{
    static const char fn[] = "parlm_crossentropy_vp_partial";
    if (!part || !logits || !targets)
        return parlm_error(PARLM_EINVAL, "%s: null buffer", fn);
    parlm_status st = check_slice(fn, N, v0, Vs, V);
    if (st == PARLM_OK)
        st = check_targets(fn, targets, N, V);
    if (st != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int64_t real = slice_real(v0, Vs, V);
    int nt = parlm_threads_for(N * (real + 1), 1 << 16, omp_get_max_threads());
#pragma omp parallel num_threads(nt)
    {
        int64_t r0, r1;
        int32_t lt[VP_ROWS];
        float loss[VP_ROWS], lse[VP_ROWS];
        parlm_split(N, 1, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);
        for (int64_t r = r0; r < r1; r += VP_ROWS) {
            int64_t n = r1 - r < VP_ROWS ? r1 - r : VP_ROWS;
            local_targets(lt, targets, r, n, v0, real);
            if (real > 0)
                k->ce_fwd(n, real, logits + r * Vs, Vs, lt, loss, lse);
            for (int64_t i = 0; i < n; i++) {
                part[2 * (r + i)] = real > 0 ? lse[i] : -INFINITY;
                part[2 * (r + i) + 1] = lt[i] >= 0 ? logits[(r + i) * Vs + lt[i]] : 0.0f;
            }
        }
    }
    return PARLM_OK;
}

parlm_status parlm_crossentropy_vp_combine(float *losses, float *lse, const float *gathered,
                                           int64_t N, int tp)
{
    if (!losses || !lse || !gathered)
        return parlm_error(PARLM_EINVAL, "parlm_crossentropy_vp_combine: null buffer");
    if (N < 1 || tp < 1)
        return parlm_error(PARLM_EINVAL, "parlm_crossentropy_vp_combine: need N, tp >= 1 (got "
                           "N=%lld tp=%d)", (long long)N, tp);
    for (int64_t r = 0; r < N; r++) {
        /* lse = M + log sum_s exp(lse_s - M), M the largest slice lse; in double, so the
         * only rounding left is the final one (the target term: one slice's, others 0) */
        double mx = -INFINITY, sum = 0.0;
        float tgt = 0.0f;
        for (int s = 0; s < tp; s++) {
            const float *p = gathered + ((int64_t)s * N + r) * 2;
            mx = p[0] > mx ? p[0] : mx;
            tgt += p[1];
        }
        for (int s = 0; s < tp; s++) {
            double l = gathered[((int64_t)s * N + r) * 2];
            if (l > -INFINITY)
                sum += exp(l - mx);
        }
        lse[r] = mx > -INFINITY ? (float)(mx + log(sum)) : (float)mx;
        losses[r] = lse[r] - tgt;
    }
    return PARLM_OK;
}

parlm_status parlm_crossentropy_vp_backward(float *dlogits, const float *logits,
                                            const int32_t *targets, const float *lse,
                                            const float *dloss, int64_t N, int v0, int Vs, int V)
{
    static const char fn[] = "parlm_crossentropy_vp_backward";
    if (!dlogits || !logits || !targets || !lse || !dloss)
        return parlm_error(PARLM_EINVAL, "%s: null buffer", fn);
    parlm_status st = check_slice(fn, N, v0, Vs, V);
    if (st == PARLM_OK)
        st = check_targets(fn, targets, N, V);
    if (st != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int64_t real = slice_real(v0, Vs, V);
    int nt = parlm_threads_for(N * Vs, 1 << 16, omp_get_max_threads());
#pragma omp parallel num_threads(nt)
    {
        int64_t r0, r1;
        int32_t lt[VP_ROWS];
        parlm_split(N, 1, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);
        for (int64_t r = r0; r < r1; r += VP_ROWS) {
            int64_t n = r1 - r < VP_ROWS ? r1 - r : VP_ROWS;
            local_targets(lt, targets, r, n, v0, real);
            k->ce_bwd(n, real, Vs, dlogits + r * Vs, logits + r * Vs, Vs, lt, lse + r,
                      dloss + r);
        }
    }
    return PARLM_OK;
}

parlm_status parlm_embedding_vp_forward(float *out, const int32_t *tokens, const float *wte,
                                        int64_t N, int C, int v0, int Vs, int V)
{
    static const char fn[] = "parlm_embedding_vp_forward";
    if (!out || !tokens || !wte)
        return parlm_error(PARLM_EINVAL, "%s: null buffer", fn);
    parlm_status st = check_slice(fn, N, v0, Vs, V);
    if (st == PARLM_OK && C < 1)
        st = parlm_error(PARLM_EINVAL, "%s: C = %d < 1", fn, C);
    if (st == PARLM_OK)
        st = check_targets(fn, tokens, N, V);
    if (st != PARLM_OK)
        return st;
    int nt = parlm_threads_for(N * C, 1 << 15, omp_get_max_threads());
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t r = 0; r < N; r++) {
        int64_t t = (int64_t)tokens[r] - v0;
        if (t >= 0 && t < Vs)
            memcpy(out + r * C, wte + t * C, (size_t)C * sizeof(float));
        else
            memset(out + r * C, 0, (size_t)C * sizeof(float));
    }
    return PARLM_OK;
}

parlm_status parlm_embedding_vp_backward(float *dwte, float *dwpe, const float *dout,
                                         const int32_t *tokens, int B, int T, int C, int v0,
                                         int Vs, int V)
{
    static const char fn[] = "parlm_embedding_vp_backward";
    if (!dwte || !dout || !tokens)
        return parlm_error(PARLM_EINVAL, "%s: null buffer", fn);
    parlm_status st = check_embed(fn, tokens, B, T, C, V);
    if (st == PARLM_OK)
        st = check_slice(fn, (int64_t)B * T, v0, Vs, V);
    if (st != PARLM_OK)
        return st;
    int64_t rows = (int64_t)B * T;
    int nt = parlm_threads_for(rows * C, 1 << 15, omp_get_max_threads());
#pragma omp parallel num_threads(nt)
    {
        int64_t c0, c1; /* each thread owns columns, rows in order: as embed_bwd */
        parlm_split(C, 16, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        for (int64_t r = 0; r < rows && c1 > c0; r++) {
            const float *d = dout + r * C;
            int64_t t = (int64_t)tokens[r] - v0;
            if (t >= 0 && t < Vs) {
                float *e = dwte + t * C;
                for (int64_t c = c0; c < c1; c++)
                    e[c] += d[c];
            }
            if (dwpe) {
                float *p = dwpe + (r % T) * C;
                for (int64_t c = c0; c < c1; c++)
                    p[c] += d[c];
            }
        }
    }
    return PARLM_OK;
}
