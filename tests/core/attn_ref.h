/* tests/core/attn_ref.h — naive causal attention in double precision, the independent
 * reference of the attention tests (test_attention.c) and of each kernel set's attention
 * kernels (test_kernels_nn.c). It also returns, per element, the error bound of a float
 * implementation, computed from the very sums it forms. */
#ifndef PARLM_TESTS_CORE_ATTN_REF_H
#define PARLM_TESTS_CORE_ATTN_REF_H
#include <stdint.h>

/* qkv (B,T,3C), head h of row t: q = qkv[t, h hs ..], k = qkv[t, C + h hs ..], v at 2C.
 * Explicit scores S (T,T) with the causal mask, explicit softmax P, out = P V. Also returns
 * the error bounds of a float implementation, from the sums it computes (per row i):
 *   ds_i   = err(hs) * scale * max_j sum_d |q_id k_jd|      (scores, one dot product each)
 *   out:   |v|max (2 ds_i + err(i+1))                          (softmax, then a sum of i+1)
 *   lse:   ds_i + err(i+1) + 2 u |lse_i|                                                 */

typedef struct attn_ref {
    int B, T, C, NH, hs;
    double scale;
    double *out, *lse;        /* (B,T,C), (B,NH,T) */
    double *tol_out, *tol_lse;
    double *dqkv, *tol_dqkv;  /* (B,T,3C), filled by naive_attn_bwd */
} attn_ref;

/* element (b, t, part, h, d) of qkv (B,T,3C): part 0 = q, 1 = k, 2 = v; T, C, hs in scope */
#define QKV(b, t, part, h, d) qkv[((int64_t)(b) * T + (t)) * 3 * C + (part) * C + (h) * hs + (d)]

attn_ref naive_attn_fwd(const float *qkv, int B, int T, int C, int NH);

/* Gradient of sum(out * dout) with respect to qkv into r->dqkv, with bounds r->tol_dqkv. */
void naive_attn_bwd(attn_ref *r, const float *qkv, const float *dout);

void attn_ref_free(attn_ref *r);
#endif
