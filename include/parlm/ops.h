/* parlm/ops.h — residual add, bias, GELU, layernorm and softmax, forward and backward, on
 * raw row-major floats ((rows, C) = rows rows of C contiguous floats), BLAS-style.
 * Backward calls ACCUMULATE (+=) into gradients, as in llm.c: zero them once per step.
 * Threaded with OpenMP over the current team, small inputs on the calling thread;
 * deterministic for a given thread count (row reductions: per-thread partials, fixed order).
 * Errors (PARLM_EINVAL; outputs untouched): NULL, n / rows / C < 1, sizes that overflow, and
 * buffers overlapping an output, except the exact in-place cases listed per function. */
#ifndef PARLM_OPS_H
#define PARLM_OPS_H
#include <stdint.h>

#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- residual ------------------------------------------------------------------------ */

/* out (n) = a (n) + b (n). In place: out may be a and/or b. */
PARLM_API parlm_status parlm_add(float *out, const float *a, const float *b, int64_t n);

/* dst (n) += src (n). src may be dst (doubles it). */
PARLM_API parlm_status parlm_accumulate(float *dst, const float *src, int64_t n);

/* Backward of out = a + b: da += dout, db += dout (each is parlm_accumulate).
 * da may be db (out = x + x: it receives dout twice); dout must not overlap either. */
PARLM_API parlm_status parlm_add_backward(float *da, float *db, const float *dout, int64_t n);

/* ---- bias ------------------------------------------------------------------------------ */

/* out (rows, C) += bias (C), in place (the bias after a matmul). bias must not overlap out. */
PARLM_API parlm_status parlm_bias_forward(float *out, const float *bias, int64_t rows,
                                          int64_t C);

/* dbias (C) += sum over rows of dout (rows, C). No overlap. */
PARLM_API parlm_status parlm_bias_backward(float *dbias, const float *dout, int64_t rows,
                                           int64_t C);

/* ---- GELU, tanh form: gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) ------- */

/* out (n) = gelu(x (n)). In place: out may be x. gelu(-inf) = -0, gelu(+inf) = +inf. */
PARLM_API parlm_status parlm_gelu_forward(float *out, const float *x, int64_t n);

/* dx (n) += gelu'(x) * dout. dx must not overlap x or dout. gelu'(-inf) = 0, gelu'(+inf) = 1. */
PARLM_API parlm_status parlm_gelu_backward(float *dx, const float *x, const float *dout,
                                           int64_t n);

/* ---- layernorm over the last dimension (eps 1e-5) ---------------------------------------- */

/* out (rows, C) = (x - mean) * rstd * w (C) + b (C) per row, rstd = 1 / sqrt(var + eps)
 * (biased variance). Saves mean (rows) and rstd (rows) for the backward pass.
 * In place: out may be x. mean and rstd must not overlap anything; out not w or b. */
PARLM_API parlm_status parlm_layernorm_forward(float *out, float *mean, float *rstd,
                                               const float *x, const float *w, const float *b,
                                               int64_t rows, int64_t C);

/* Given dout (rows, C) and the forward's x, w, mean, rstd:
 * dx (rows, C) += ..., dw (C) += sum_r xhat * dout, db (C) += sum_r dout.
 * No output (dx, dw, db) may overlap another buffer. */
PARLM_API parlm_status parlm_layernorm_backward(float *dx, float *dw, float *db,
                                                const float *dout, const float *x,
                                                const float *w, const float *mean,
                                                const float *rstd, int64_t rows, int64_t C);

/* ---- softmax over the last dimension --------------------------------------------------- */

/* out (rows, C) = exp(x - max) / sum per row. In place: out may be x. -inf entries (masks)
 * get 0; a row that is entirely -inf (fully masked) gives all zeros rather than NaN. */
PARLM_API parlm_status parlm_softmax_forward(float *out, const float *x, int64_t rows,
                                             int64_t C);

/* dx (rows, C) += y * (dy - dot(y, dy)) per row, y the forward's output.
 * dx must not overlap y or dy. */
PARLM_API parlm_status parlm_softmax_backward(float *dx, const float *y, const float *dy,
                                              int64_t rows, int64_t C);

/* ---- tensor forms (f32, contiguous; rows = numel / C with C the last dim of x) ----------- */

/* out = gelu(x), out the same shape as x (may be x itself). */
PARLM_API parlm_status parlm_tensor_gelu_forward(parlm_tensor *out, const parlm_tensor *x);

/* out = softmax(x) over the last dim, out the same shape as x (may be x itself). */
PARLM_API parlm_status parlm_tensor_softmax_forward(parlm_tensor *out, const parlm_tensor *x);

/* out = layernorm(x) over the last dim C; w and b are 1-D (C); mean and rstd hold rows
 * elements (any shape, e.g. x's shape without its last dim). */
PARLM_API parlm_status parlm_tensor_layernorm_forward(parlm_tensor *out, parlm_tensor *mean,
                                                      parlm_tensor *rstd, const parlm_tensor *x,
                                                      const parlm_tensor *w,
                                                      const parlm_tensor *b);

#ifdef __cplusplus
}
#endif
#endif
