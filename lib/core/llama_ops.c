/* lib/core/llama_ops.c — public RMSNorm, RoPE and SwiGLU: validate at the boundary, split
 * rows over OpenMP threads (static contiguous slices, lib/core/parallel.h), run the current
 * kernel set on each slice. The one idea: as for layernorm in ops.c, the RMSNorm weight
 * gradient gives thread 0 the real dw and every other thread a zeroed partial, added in
 * thread order afterwards — deterministic, no atomics. */
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dispatch.h"
#include "../../base/error.h"
#include "op_args.h"
#include "parallel.h"
#include "parlm/llama_ops.h"
#include "parlm/tensor.h"

#define GRAIN_ROWS 16384 /* floats per thread before a second one pays off (see ops.c) */
#define LINE_FLOATS 16

/* ---- threading ------------------------------------------------------------------------- */

static int threads_for(int64_t work, int64_t rows)
{
    int nt = parlm_threads_for(work, GRAIN_ROWS, omp_get_max_threads());
    return rows < nt ? (int)rows : nt;
}

/* ---- RMSNorm ------------------------------------------------------------------------------ */

parlm_status parlm_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w,
                                   int64_t rows, int64_t c, float eps)
{
    static const char fn[] = "parlm_rmsnorm_forward";
    int64_t n;
    parlm_status st = op_check_rows(fn, rows, c, "C", &n);
    if (st != PARLM_OK)
        return st;
    if (!(eps > 0.0f) || isinf(eps))
        return parlm_error(PARLM_EINVAL, "%s: eps must be finite and > 0, got %g", fn, (double)eps);
    /* x may be out itself (in place) */
    const op_arg a[] = {{"out", out, n, 1, 0}, {"rstd", rstd, rows, 1, 0}, {"x", x, n, 0, 0x1u},
                        {"w", w, c, 0, 0}};
    if ((st = op_check_args(fn, a, 4)) != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int nt = threads_for(n, rows);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t r0, r1;
        parlm_split(rows, 1, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);
        if (r1 > r0)
            k->rmsnorm_fwd(out + r0 * c, rstd + r0, x + r0 * c, w, r1 - r0, c, eps);
    }
    return PARLM_OK;
}

parlm_status parlm_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x,
                                    const float *w, const float *rstd, int64_t rows, int64_t c)
{
    static const char fn[] = "parlm_rmsnorm_backward";
    int64_t n;
    parlm_status st = op_check_rows(fn, rows, c, "C", &n);
    if (st != PARLM_OK)
        return st;
    const op_arg a[] = {{"dx", dx, n, 1, 0}, {"dw", dw, c, 1, 0}, {"dout", dout, n, 0, 0},
                        {"x", x, n, 0, 0},   {"w", w, c, 0, 0},   {"rstd", rstd, rows, 0, 0}};
    if ((st = op_check_args(fn, a, 6)) != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int nt = threads_for(2 * n, rows); /* two passes and a reduction */
    int64_t stride = (c + LINE_FLOATS - 1) / LINE_FLOATS * LINE_FLOATS;
    float *ws = NULL;
    if (nt > 1 && stride <= OP_MAX_FLOATS / (nt - 1))
        ws = parlm_alloc((size_t)(stride * (nt - 1)), sizeof(float));
    if (!ws) /* no workspace: one thread (a reduction never fails for lack of memory) */
        nt = 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = omp_get_thread_num(), team = omp_get_num_threads();
        int64_t r0, r1;
        parlm_split(rows, 1, t, team, &r0, &r1);
        float *pw = dw;
        if (t > 0) {
            pw = ws + (t - 1) * stride;
            memset(pw, 0, (size_t)stride * sizeof(float));
        }
        if (r1 > r0)
            k->rmsnorm_bwd(dx + r0 * c, pw, dout + r0 * c, x + r0 * c, w, rstd + r0, r1 - r0, c);
        if (team > 1) {
#pragma omp barrier
            int64_t j0, j1; /* dw[j0:j1] += partials in thread order, columns split */
            parlm_split(c, LINE_FLOATS, t, team, &j0, &j1);
            for (int p = 0; p < team - 1 && j1 > j0; p++)
                k->add(dw + j0, dw + j0, ws + p * stride + j0, j1 - j0);
        }
    }
    parlm_free(ws);
    return PARLM_OK;
}

/* ---- RoPE ------------------------------------------------------------------------------------ */

parlm_status parlm_rope_table(float *cos_t, float *sin_t, int64_t n_pos, int64_t hs, double theta,
                              double scale)
{
    static const char fn[] = "parlm_rope_table";
    int64_t n;
    parlm_status st = op_check_rows(fn, n_pos, hs, "hs", &n);
    if (st != PARLM_OK)
        return st;
    if (hs % 2)
        return parlm_error(PARLM_EINVAL, "%s: head size %lld is odd (RoPE rotates pairs)", fn,
                           (long long)hs);
    if (!(theta > 1.0) || isinf(theta))
        return parlm_error(PARLM_EINVAL, "%s: theta must be finite and > 1, got %g", fn, theta);
    if (!(scale >= 1.0) || isinf(scale))
        return parlm_error(PARLM_EINVAL, "%s: scale must be finite and >= 1, got %g", fn, scale);
    const op_arg a[] = {{"cos", cos_t, n, 1, 0}, {"sin", sin_t, n, 1, 0}};
    if ((st = op_check_args(fn, a, 2)) != PARLM_OK)
        return st;
#pragma omp parallel for if (n > 65536)
    for (int64_t p = 0; p < n_pos; p++)
        for (int64_t i = 0; i < hs / 2; i++) {
            double ang = (double)p / scale * pow(theta, -2.0 * (double)i / (double)hs);
            float c = (float)cos(ang), s = (float)sin(ang);
            cos_t[p * hs + 2 * i] = c;
            cos_t[p * hs + 2 * i + 1] = c;
            sin_t[p * hs + 2 * i] = -s;
            sin_t[p * hs + 2 * i + 1] = s;
        }
    return PARLM_OK;
}

static parlm_status rope_apply(const char *fn, float *x, int64_t T, int64_t nh, int64_t hs,
                               int64_t ld, int64_t pos0, const float *cos_t, const float *sin_t,
                               int64_t n_pos, int inverse)
{
    if (T < 1 || nh < 1 || hs < 2)
        return parlm_error(PARLM_EINVAL,
                           "%s: T, n_heads must be >= 1 and hs >= 2, got %lld, "
                           "%lld, %lld",
                           fn, (long long)T, (long long)nh, (long long)hs);
    if (hs % 2)
        return parlm_error(PARLM_EINVAL, "%s: head size %lld is odd (RoPE rotates pairs)", fn,
                           (long long)hs);
    if (nh > OP_MAX_FLOATS / hs || ld < nh * hs)
        return parlm_error(PARLM_EINVAL, "%s: row stride %lld < n_heads * hs = %lld * %lld", fn,
                           (long long)ld, (long long)nh, (long long)hs);
    if (pos0 < 0 || n_pos < 1 || pos0 > n_pos - T)
        return parlm_error(PARLM_EINVAL, "%s: positions %lld .. %lld outside the table of %lld", fn,
                           (long long)pos0, (long long)pos0 + T - 1, (long long)n_pos);
    if (T - 1 > (OP_MAX_FLOATS - nh * hs) / ld || n_pos > OP_MAX_FLOATS / hs)
        return parlm_error(PARLM_EINVAL, "%s: sizes exceed the address space", fn);
    int64_t n = (T - 1) * ld + nh * hs;
    const op_arg a[] = {{"x", x, n, 1, 0}, {"cos", cos_t, n_pos * hs, 0, 0},
                        {"sin", sin_t, n_pos * hs, 0, 0}};
    parlm_status st = op_check_args(fn, a, 3);
    if (st != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    void (*op)(float *, int64_t, int64_t, int64_t, int64_t, const float *, const float *) =
        inverse ? k->rope_bwd : k->rope_fwd;
    const float *cs = cos_t + pos0 * hs, *sn = sin_t + pos0 * hs;
    int nt = threads_for(T * nh * hs, T);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t t0, t1;
        parlm_split(T, 1, omp_get_thread_num(), omp_get_num_threads(), &t0, &t1);
        if (t1 > t0)
            op(x + t0 * ld, t1 - t0, nh, hs, ld, cs + t0 * hs, sn + t0 * hs);
    }
    return PARLM_OK;
}

parlm_status parlm_rope_forward(float *x, int64_t T, int64_t n_heads, int64_t hs, int64_t ld,
                                int64_t pos0, const float *cos_t, const float *sin_t, int64_t n_pos)
{
    return rope_apply("parlm_rope_forward", x, T, n_heads, hs, ld, pos0, cos_t, sin_t, n_pos, 0);
}

parlm_status parlm_rope_backward(float *dx, int64_t T, int64_t n_heads, int64_t hs, int64_t ld,
                                 int64_t pos0, const float *cos_t, const float *sin_t,
                                 int64_t n_pos)
{
    return rope_apply("parlm_rope_backward", dx, T, n_heads, hs, ld, pos0, cos_t, sin_t, n_pos, 1);
}

/* ---- SwiGLU ------------------------------------------------------------------------------------
 */

parlm_status parlm_swiglu_forward(float *out, const float *gu, int64_t rows, int64_t h)
{
    static const char fn[] = "parlm_swiglu_forward";
    int64_t n;
    parlm_status st = op_check_rows(fn, rows, h, "H", &n);
    if (st != PARLM_OK)
        return st;
    if (n > OP_MAX_FLOATS / 2)
        return parlm_error(PARLM_EINVAL, "%s: 2 * rows * H exceeds the address space", fn);
    const op_arg a[] = {{"out", out, n, 1, 0}, {"gu", gu, 2 * n, 0, 0}};
    if ((st = op_check_args(fn, a, 2)) != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int nt = threads_for(4 * n, rows); /* an exp per element */
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t r0, r1;
        parlm_split(rows, 1, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);
        if (r1 > r0)
            k->swiglu_fwd(out + r0 * h, gu + r0 * 2 * h, r1 - r0, h);
    }
    return PARLM_OK;
}

parlm_status parlm_swiglu_backward(float *dgu, const float *dout, const float *gu, int64_t rows,
                                   int64_t h)
{
    static const char fn[] = "parlm_swiglu_backward";
    int64_t n;
    parlm_status st = op_check_rows(fn, rows, h, "H", &n);
    if (st != PARLM_OK)
        return st;
    if (n > OP_MAX_FLOATS / 2)
        return parlm_error(PARLM_EINVAL, "%s: 2 * rows * H exceeds the address space", fn);
    const op_arg a[] = {{"dgu", dgu, 2 * n, 1, 0}, {"dout", dout, n, 0, 0},
                        {"gu", gu, 2 * n, 0, 0}};
    if ((st = op_check_args(fn, a, 3)) != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int nt = threads_for(4 * n, rows);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t r0, r1;
        parlm_split(rows, 1, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);
        if (r1 > r0)
            k->swiglu_bwd(dgu + r0 * 2 * h, dout + r0 * h, gu + r0 * 2 * h, r1 - r0, h);
    }
    return PARLM_OK;
}
