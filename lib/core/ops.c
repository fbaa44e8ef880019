/* lib/core/ops.c — public elementwise and row-wise ops: validate at the boundary, split the
 * work over OpenMP threads (static contiguous slices, lib/core/parallel.h), run the current
 * kernel set on each slice. The one idea: reductions over rows (bias and layernorm
 * weight gradients) give thread 0 the real gradient and every other thread a zeroed
 * partial buffer, then add the partials in thread order — deterministic, no atomics. */
#include <omp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dispatch.h"
#include "../../base/error.h"
#include "op_args.h"
#include "parallel.h"
#include "parlm/ops.h"
#include "parlm/tensor.h"

/* Elements a thread should get at least before a second thread pays off (fork/join of a
 * warm OpenMP team costs 1-2 us; measured on Zen 5 with AVX-512 kernels): streaming ops
 * run at ~10 elements/ns and need more work per thread than ops that evaluate an exp per
 * element (~3 elements/ns). Reductions also pay for a workspace and a second phase. */
#define GRAIN_STREAM 32768
#define GRAIN_MATH 8192
#define GRAIN_REDUCE 65536
#define LINE_FLOATS 16 /* element slices start on 64-byte cache lines (for aligned bases) */

/* ---- threading --------------------------------------------------------------------------- */

static int threads_for(int64_t work, int64_t grain, int64_t max_items)
{
    int nt = parlm_threads_for(work, grain, omp_get_max_threads());
    return max_items < nt ? (int)max_items : nt;
}

/* This thread's slice of [0, n) in the current team. */
static void my_slice(int64_t n, int64_t align, int64_t *begin, int64_t *end)
{
    parlm_split(n, align, omp_get_thread_num(), omp_get_num_threads(), begin, end);
}

/* Partial-sum workspace for nt threads: thread t > 0 gets `per` zeroed-on-use floats at
 * ws + (t - 1) * stride, stride = per rounded up to a cache line. NULL (then run on one
 * thread) if it cannot be had: a reduction never fails for lack of memory. */
static float *partials_alloc(int nt, int64_t per, int64_t *stride)
{
    *stride = (per + LINE_FLOATS - 1) / LINE_FLOATS * LINE_FLOATS;
    if (nt < 2 || *stride > OP_MAX_FLOATS / (nt - 1))
        return NULL;
    return parlm_alloc((size_t)(*stride * (nt - 1)), sizeof(float));
}

/* After a barrier: dst[0:c] += partial_1 + partial_2 + ... in thread order, the columns
 * split over the team. `np` partials at ws, ws + stride, ... */
static void partials_reduce(const parlm_kernels *k, float *dst, const float *ws, int64_t stride,
                            int np, int64_t c)
{
    int64_t j0, j1;
    my_slice(c, LINE_FLOATS, &j0, &j1);
    if (j1 <= j0)
        return;
    for (int p = 0; p < np; p++)
        k->add(dst + j0, dst + j0, ws + p * stride + j0, j1 - j0);
}

/* ---- residual ------------------------------------------------------------------------------ */

parlm_status parlm_add(float *out, const float *a, const float *b, int64_t n)
{
    parlm_status st = op_check_count("parlm_add", n);
    if (st != PARLM_OK)
        return st;
    const op_arg args[] = {{"out", out, n, 1, 0x6u}, {"a", a, n, 0, 0}, {"b", b, n, 0, 0}};
    if ((st = op_check_args("parlm_add", args, 3)) != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int nt = threads_for(n, GRAIN_STREAM, n);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t i0, i1;
        my_slice(n, LINE_FLOATS, &i0, &i1);
        if (i1 > i0)
            k->add(out + i0, a + i0, b + i0, i1 - i0);
    }
    return PARLM_OK;
}

parlm_status parlm_accumulate(float *dst, const float *src, int64_t n)
{
    parlm_status st = op_check_count("parlm_accumulate", n);
    if (st != PARLM_OK)
        return st;
    const op_arg args[] = {{"dst", dst, n, 1, 0x2u}, {"src", src, n, 0, 0}};
    if ((st = op_check_args("parlm_accumulate", args, 2)) != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int nt = threads_for(n, GRAIN_STREAM, n);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t i0, i1;
        my_slice(n, LINE_FLOATS, &i0, &i1);
        if (i1 > i0)
            k->add(dst + i0, dst + i0, src + i0, i1 - i0);
    }
    return PARLM_OK;
}

parlm_status parlm_add_backward(float *da, float *db, const float *dout, int64_t n)
{
    parlm_status st = op_check_count("parlm_add_backward", n);
    if (st != PARLM_OK)
        return st;
    const op_arg args[] = {{"da", da, n, 1, 0x2u}, {"db", db, n, 1, 0x1u}, {"dout", dout, n, 0, 0}};
    if ((st = op_check_args("parlm_add_backward", args, 3)) != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int nt = threads_for(2 * n, GRAIN_STREAM, n);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t i0, i1;
        my_slice(n, LINE_FLOATS, &i0, &i1);
        if (i1 > i0) {
            k->add(da + i0, da + i0, dout + i0, i1 - i0);
            k->add(db + i0, db + i0, dout + i0, i1 - i0);
        }
    }
    return PARLM_OK;
}

/* ---- bias ---------------------------------------------------------------------------------- */

parlm_status parlm_bias_forward(float *out, const float *bias, int64_t rows, int64_t c)
{
    int64_t n;
    parlm_status st = op_check_rows("parlm_bias_forward", rows, c, "C", &n);
    if (st != PARLM_OK)
        return st;
    const op_arg args[] = {{"out", out, n, 1, 0}, {"bias", bias, c, 0, 0}};
    if ((st = op_check_args("parlm_bias_forward", args, 2)) != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int nt = threads_for(n, GRAIN_STREAM, rows);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t r0, r1;
        my_slice(rows, 1, &r0, &r1);
        if (r1 > r0)
            k->bias_fwd(out + r0 * c, bias, r1 - r0, c);
    }
    return PARLM_OK;
}

parlm_status parlm_bias_backward(float *dbias, const float *dout, int64_t rows, int64_t c)
{
    int64_t n;
    parlm_status st = op_check_rows("parlm_bias_backward", rows, c, "C", &n);
    if (st != PARLM_OK)
        return st;
    const op_arg args[] = {{"dbias", dbias, c, 1, 0}, {"dout", dout, n, 0, 0}};
    if ((st = op_check_args("parlm_bias_backward", args, 2)) != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int nt = threads_for(n, GRAIN_REDUCE, rows);
    int64_t stride = 0;
    float *ws = partials_alloc(nt, c, &stride);
    if (!ws)
        nt = 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = omp_get_thread_num(), team = omp_get_num_threads();
        int64_t r0, r1;
        my_slice(rows, 1, &r0, &r1);
        float *acc = dbias;
        if (t > 0) {
            acc = ws + (t - 1) * stride;
            memset(acc, 0, (size_t)c * sizeof(float));
        }
        if (r1 > r0)
            k->bias_bwd(acc, dout + r0 * c, r1 - r0, c);
        if (team > 1) {
#pragma omp barrier
            partials_reduce(k, dbias, ws, stride, team - 1, c);
        }
    }
    parlm_free(ws);
    return PARLM_OK;
}

/* ---- GELU ------------------------------------------------------------------------------------ */

parlm_status parlm_gelu_forward(float *out, const float *x, int64_t n)
{
    parlm_status st = op_check_count("parlm_gelu_forward", n);
    if (st != PARLM_OK)
        return st;
    const op_arg args[] = {{"out", out, n, 1, 0x2u}, {"x", x, n, 0, 0}};
    if ((st = op_check_args("parlm_gelu_forward", args, 2)) != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int nt = threads_for(n, GRAIN_MATH, n);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t i0, i1;
        my_slice(n, LINE_FLOATS, &i0, &i1);
        if (i1 > i0)
            k->gelu_fwd(out + i0, x + i0, i1 - i0);
    }
    return PARLM_OK;
}

parlm_status parlm_gelu_backward(float *dx, const float *x, const float *dout, int64_t n)
{
    parlm_status st = op_check_count("parlm_gelu_backward", n);
    if (st != PARLM_OK)
        return st;
    const op_arg args[] = {{"dx", dx, n, 1, 0}, {"x", x, n, 0, 0}, {"dout", dout, n, 0, 0}};
    if ((st = op_check_args("parlm_gelu_backward", args, 3)) != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int nt = threads_for(n, GRAIN_MATH, n);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t i0, i1;
        my_slice(n, LINE_FLOATS, &i0, &i1);
        if (i1 > i0)
            k->gelu_bwd(dx + i0, x + i0, dout + i0, i1 - i0);
    }
    return PARLM_OK;
}

/* ---- layernorm ------------------------------------------------------------------------------- */

parlm_status parlm_layernorm_forward(float *out, float *mean, float *rstd, const float *x,
                                     const float *w, const float *b, int64_t rows, int64_t c)
{
    static const char fn[] = "parlm_layernorm_forward";
    int64_t n;
    parlm_status st = op_check_rows(fn, rows, c, "C", &n);
    if (st != PARLM_OK)
        return st;
    const op_arg args[] = {{"out", out, n, 1, 0x8u}, {"mean", mean, rows, 1, 0},
                           {"rstd", rstd, rows, 1, 0}, {"x", x, n, 0, 0},
                           {"w", w, c, 0, 0},          {"b", b, c, 0, 0}};
    if ((st = op_check_args(fn, args, 6)) != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int nt = threads_for(n, GRAIN_STREAM / 2, rows); /* three passes over each row */
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t r0, r1;
        my_slice(rows, 1, &r0, &r1);
        if (r1 > r0)
            k->layernorm_fwd(out + r0 * c, mean + r0, rstd + r0, x + r0 * c, w, b, r1 - r0, c);
    }
    return PARLM_OK;
}

parlm_status parlm_layernorm_backward(float *dx, float *dw, float *db, const float *dout,
                                      const float *x, const float *w, const float *mean,
                                      const float *rstd, int64_t rows, int64_t c)
{
    static const char fn[] = "parlm_layernorm_backward";
    int64_t n;
    parlm_status st = op_check_rows(fn, rows, c, "C", &n);
    if (st != PARLM_OK)
        return st;
    const op_arg args[] = {{"dx", dx, n, 1, 0},         {"dw", dw, c, 1, 0},
                           {"db", db, c, 1, 0},         {"dout", dout, n, 0, 0},
                           {"x", x, n, 0, 0},           {"w", w, c, 0, 0},
                           {"mean", mean, rows, 0, 0},  {"rstd", rstd, rows, 0, 0}};
    if ((st = op_check_args(fn, args, 8)) != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int nt = threads_for(n, GRAIN_STREAM, rows); /* two passes, six streams, a reduction */
    int64_t stride = 0;
    /* per extra thread: a dw partial, then a db partial */
    float *ws = partials_alloc(nt, 2 * ((c + LINE_FLOATS - 1) / LINE_FLOATS * LINE_FLOATS),
                               &stride);
    if (!ws)
        nt = 1;
    int64_t half = stride / 2;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = omp_get_thread_num(), team = omp_get_num_threads();
        int64_t r0, r1;
        my_slice(rows, 1, &r0, &r1);
        float *pw = dw, *pb = db;
        if (t > 0) {
            pw = ws + (t - 1) * stride;
            pb = pw + half;
            memset(pw, 0, (size_t)stride * sizeof(float));
        }
        if (r1 > r0)
            k->layernorm_bwd(dx + r0 * c, pw, pb, dout + r0 * c, x + r0 * c, w, mean + r0,
                             rstd + r0, r1 - r0, c);
        if (team > 1) {
#pragma omp barrier
            partials_reduce(k, dw, ws, stride, team - 1, c);
            partials_reduce(k, db, ws + half, stride, team - 1, c);
        }
    }
    parlm_free(ws);
    return PARLM_OK;
}

/* ---- softmax --------------------------------------------------------------------------------- */

parlm_status parlm_softmax_forward(float *out, const float *x, int64_t rows, int64_t c)
{
    int64_t n;
    parlm_status st = op_check_rows("parlm_softmax_forward", rows, c, "C", &n);
    if (st != PARLM_OK)
        return st;
    const op_arg args[] = {{"out", out, n, 1, 0x2u}, {"x", x, n, 0, 0}};
    if ((st = op_check_args("parlm_softmax_forward", args, 2)) != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int nt = threads_for(n, GRAIN_MATH, rows);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t r0, r1;
        my_slice(rows, 1, &r0, &r1);
        if (r1 > r0)
            k->softmax_fwd(out + r0 * c, x + r0 * c, r1 - r0, c);
    }
    return PARLM_OK;
}

parlm_status parlm_softmax_backward(float *dx, const float *y, const float *dy, int64_t rows,
                                    int64_t c)
{
    int64_t n;
    parlm_status st = op_check_rows("parlm_softmax_backward", rows, c, "C", &n);
    if (st != PARLM_OK)
        return st;
    const op_arg args[] = {{"dx", dx, n, 1, 0}, {"y", y, n, 0, 0}, {"dy", dy, n, 0, 0}};
    if ((st = op_check_args("parlm_softmax_backward", args, 3)) != PARLM_OK)
        return st;
    const parlm_kernels *k = parlm_kern();
    int nt = threads_for(n, GRAIN_STREAM / 2, rows);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t r0, r1;
        my_slice(rows, 1, &r0, &r1);
        if (r1 > r0)
            k->softmax_bwd(dx + r0 * c, y + r0 * c, dy + r0 * c, r1 - r0, c);
    }
    return PARLM_OK;
}

/* ---- tensor forms ------------------------------------------------------------------------------ */

/* t is a non-NULL, contiguous f32 tensor with data. */
static parlm_status check_f32(const char *fn, const char *name, const parlm_tensor *t)
{
    if (!t)
        return parlm_error(PARLM_EINVAL, "%s: %s is NULL", fn, name);
    if (!t->data)
        return parlm_error(PARLM_EINVAL, "%s: %s has no data", fn, name);
    if (t->ndim < 1 || t->ndim > PARLM_MAX_DIMS)
        return parlm_error(PARLM_EINVAL, "%s: %s has ndim %d (expected 1..%d)", fn, name, t->ndim,
                           PARLM_MAX_DIMS);
    if (t->dtype != PARLM_F32)
        return parlm_error(PARLM_EINVAL, "%s: %s must be f32", fn, name);
    if (!parlm_tensor_is_contiguous(t))
        return parlm_error(PARLM_EINVAL, "%s: %s must be contiguous", fn, name);
    return PARLM_OK;
}

static int same_shape(const parlm_tensor *a, const parlm_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

/* out and x: valid, same shape; *rows x *c with c the last dim of x. */
static parlm_status check_unary(const char *fn, const parlm_tensor *out, const parlm_tensor *x,
                                int64_t *rows, int64_t *c)
{
    parlm_status st;
    if ((st = check_f32(fn, "out", out)) != PARLM_OK || (st = check_f32(fn, "x", x)) != PARLM_OK)
        return st;
    if (!same_shape(out, x))
        return parlm_error(PARLM_EINVAL, "%s: out must have the shape of x (%d dims, last %lld)",
                           fn, x->ndim, (long long)x->shape[x->ndim - 1]);
    *c = x->shape[x->ndim - 1];
    *rows = *c > 0 ? parlm_tensor_numel(x) / *c : 0;
    return PARLM_OK;
}

parlm_status parlm_tensor_gelu_forward(parlm_tensor *out, const parlm_tensor *x)
{
    int64_t rows, c;
    parlm_status st = check_unary("parlm_tensor_gelu_forward", out, x, &rows, &c);
    if (st != PARLM_OK)
        return st;
    return parlm_gelu_forward(out->data, x->data, parlm_tensor_numel(x));
}

parlm_status parlm_tensor_softmax_forward(parlm_tensor *out, const parlm_tensor *x)
{
    int64_t rows, c;
    parlm_status st = check_unary("parlm_tensor_softmax_forward", out, x, &rows, &c);
    if (st != PARLM_OK)
        return st;
    return parlm_softmax_forward(out->data, x->data, rows, c);
}

parlm_status parlm_tensor_layernorm_forward(parlm_tensor *out, parlm_tensor *mean,
                                            parlm_tensor *rstd, const parlm_tensor *x,
                                            const parlm_tensor *w, const parlm_tensor *b)
{
    static const char fn[] = "parlm_tensor_layernorm_forward";
    int64_t rows, c;
    parlm_status st = check_unary(fn, out, x, &rows, &c);
    if (st != PARLM_OK)
        return st;
    if ((st = check_f32(fn, "mean", mean)) != PARLM_OK ||
        (st = check_f32(fn, "rstd", rstd)) != PARLM_OK ||
        (st = check_f32(fn, "w", w)) != PARLM_OK || (st = check_f32(fn, "b", b)) != PARLM_OK)
        return st;
    if (w->ndim != 1 || w->shape[0] != c)
        return parlm_error(PARLM_EINVAL, "%s: w must be 1-D with %lld elements (the last dim of "
                           "x), got %d-D with %lld", fn, (long long)c, w->ndim,
                           (long long)parlm_tensor_numel(w));
    if (b->ndim != 1 || b->shape[0] != c)
        return parlm_error(PARLM_EINVAL, "%s: b must be 1-D with %lld elements (the last dim of "
                           "x), got %d-D with %lld", fn, (long long)c, b->ndim,
                           (long long)parlm_tensor_numel(b));
    if (parlm_tensor_numel(mean) != rows || parlm_tensor_numel(rstd) != rows)
        return parlm_error(PARLM_EINVAL, "%s: mean and rstd must hold one value per row of x "
                           "(%lld), got %lld and %lld", fn, (long long)rows,
                           (long long)parlm_tensor_numel(mean), (long long)parlm_tensor_numel(rstd));
    return parlm_layernorm_forward(out->data, mean->data, rstd->data, x->data, w->data, b->data,
                                   rows, c);
}
