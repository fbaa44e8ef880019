/* parlm/llama_ops.h — the ops Llama-family models use in place of GPT-2's: RMSNorm, rotary
 * position embedding (RoPE) and the SwiGLU MLP activation, forward and backward, on raw
 * row-major floats. Backward calls ACCUMULATE (+=) into gradients, except RoPE's, which
 * works in place. Threaded with OpenMP; deterministic for a given thread count. Errors
 * (PARLM_EINVAL with a message; outputs untouched): NULL, sizes < 1 or overflowing, odd
 * head sizes, positions outside the table, outputs overlapping other buffers. */
#ifndef PARLM_LLAMA_OPS_H
#define PARLM_LLAMA_OPS_H
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- RMSNorm over the last dimension ----------------------------------------------------
 * out (rows, C) = x * rstd * w (C), rstd = 1 / sqrt(mean(x^2) + eps) saved per row (rows).
 * eps > 0 (Llama uses 1e-5 or 1e-6: the GGUF key llama.attention.layer_norm_rms_epsilon).
 * In place: out may be x. */
PARLM_API parlm_status parlm_rmsnorm_forward(float *out, float *rstd, const float *x,
                                             const float *w, int64_t rows, int64_t C, float eps);

/* dx (rows, C) += rstd (dn - xhat mean(dn xhat)), dw (C) += sum_r xhat dout, with
 * xhat = x rstd and dn = w dout, from the forward's x, w and rstd. No overlaps. */
PARLM_API parlm_status parlm_rmsnorm_backward(float *dx, float *dw, const float *dout,
                                              const float *x, const float *w, const float *rstd,
                                              int64_t rows, int64_t C);

/* ---- rotary position embedding ------------------------------------------------------------
 * Layout: ADJACENT pairs (x[2i], x[2i+1]) of each head are rotated by the angle
 * pos * theta^(-2i/hs) / scale — llama.cpp's "normal" rope (LLM_ARCH_LLAMA), which is the
 * layout of q/k weights in GGUF llama files: llama.cpp's converter permutes Hugging Face's
 * q_proj/k_proj rows (HF rotates the halves (x[i], x[i + hs/2]), "NeoX" style) into it. So
 * a GGUF file runs as stored, and HF safetensors q/k weights need that same row
 * permutation when read (one layout in memory, one kernel).
 *
 * parlm_rope_table fills cos and sin (n_pos, hs) for positions 0 .. n_pos-1:
 * cos[p, 2i] = cos[p, 2i+1] = cos(a), sin[p, 2i] = -sin(a), sin[p, 2i+1] = +sin(a), with
 * a = p * theta^(-2i/hs) / scale computed in double and rounded once to float (so every
 * kernel set sees the same table). theta: the base (10000; Llama 3: 500000); scale >= 1:
 * linear position interpolation (1 = none). hs even. */
PARLM_API parlm_status parlm_rope_table(float *cos, float *sin, int64_t n_pos, int64_t hs,
                                        double theta, double scale);

/* In place on x: T rows (row t at x + t*ld floats) of n_heads heads of hs floats (head h
 * at + h*hs; ld >= n_heads*hs, e.g. the q or k part of a fused qkv row), row t at position
 * pos0 + t, which must be < n_pos, the table's length. */
PARLM_API parlm_status parlm_rope_forward(float *x, int64_t T, int64_t n_heads, int64_t hs,
                                          int64_t ld, int64_t pos0, const float *cos,
                                          const float *sin, int64_t n_pos);

/* The inverse rotation, in place: turns the gradient of the rotated rows into the gradient
 * of the rows before rotation (a rotation's transpose is its inverse). Same arguments. */
PARLM_API parlm_status parlm_rope_backward(float *dx, int64_t T, int64_t n_heads, int64_t hs,
                                           int64_t ld, int64_t pos0, const float *cos,
                                           const float *sin, int64_t n_pos);

/* ---- SwiGLU: out = silu(gate) * up, silu(g) = g * sigmoid(g) ------------------------------
 * gu (rows, 2H): each row is gate (H floats) then up (H floats) — the output of ONE GEMM
 * against the gate and up weights stacked ([W_gate; W_up], 2H x C), which reads the input
 * once instead of twice; the backward writes dgu in the same layout, so one GEMM gives
 * both dx and the stacked weights' gradient. Inputs finite. */
PARLM_API parlm_status parlm_swiglu_forward(float *out, const float *gu, int64_t rows,
                                            int64_t H);

/* dgu (rows, 2H): gate half += dout * up * silu'(gate), up half += dout * silu(gate).
 * dout (rows, H). No overlaps. */
PARLM_API parlm_status parlm_swiglu_backward(float *dgu, const float *dout, const float *gu,
                                             int64_t rows, int64_t H);

#ifdef __cplusplus
}
#endif
#endif
