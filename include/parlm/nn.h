/* parlm/nn.h — the transformer kernels that are more than elementwise: fused causal
 * attention (FlashAttention style: O(B*T*C) memory, never the B*NH*T*T scores), fused
 * softmax + cross-entropy, token + position embeddings, AdamW and the global norm.
 * Shapes in comments: B batch, T sequence, C channels, NH heads (hs = C / NH), V vocab,
 * Vp padded vocab (row width of the logits). Backward calls ACCUMULATE (+=) unless they
 * say otherwise. Threaded with OpenMP; deterministic for a given thread count. */
#ifndef PARLM_NN_H
#define PARLM_NN_H
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* qkv (B,T,3C) [q | k | v per row] -> out (B,T,C), lse (B,NH,T) saved for backward.
 * Causal: position t attends 0..t. Requires C % NH == 0 and hs = C/NH <= 256. */
PARLM_API parlm_status parlm_attention_forward(float *out, float *lse, const float *qkv, int B,
                                               int T, int C, int NH);

/* dqkv (B,T,3C) += d(out)/d(qkv) . dout (B,T,C), from the forward's qkv, out and lse. */
PARLM_API parlm_status parlm_attention_backward(float *dqkv, const float *dout, const float *qkv,
                                                const float *out, const float *lse, int B, int T,
                                                int C, int NH);

/* Attention of tq new positions t0 .. t0+tq-1 of one sequence against a KV cache
 * (generation): q (tq,C) with row stride ldq; kcache, vcache (>= t0+tq, C) hold the keys
 * and values of positions 0 .. t0+tq-1 (rows C floats apart); out (tq,C). */
PARLM_API parlm_status parlm_attention_cached(float *out, const float *q, int64_t ldq,
                                              const float *kcache, const float *vcache, int t0,
                                              int tq, int C, int NH);

/* Grouped-query attention (Llama 2 70B, Mistral, TinyLlama): NKV key/value heads, NH a
 * multiple of NKV, query head h attends with key/value head h / (NH/NKV). qkv rows are
 * C + 2 NKV hs floats [q (C) | k (NKV hs) | v (NKV hs)], hs = C / NH; out (B,T,C), lse
 * (B,NH,T). NKV = NH is the multi-head attention above (bitwise the same results). */
PARLM_API parlm_status parlm_attention_forward_gqa(float *out, float *lse, const float *qkv,
                                                   int B, int T, int C, int NH, int NKV);
/* dqkv (B,T,C + 2 NKV hs) += d(out)/d(qkv) . dout; a key/value head's gradient sums the
 * contributions of its NH/NKV query heads in head order. */
PARLM_API parlm_status parlm_attention_backward_gqa(float *dqkv, const float *dout,
                                                    const float *qkv, const float *out,
                                                    const float *lse, int B, int T, int C,
                                                    int NH, int NKV);
/* parlm_attention_cached with kcache, vcache rows of NKV hs floats. */
PARLM_API parlm_status parlm_attention_cached_gqa(float *out, const float *q, int64_t ldq,
                                                  const float *kcache, const float *vcache,
                                                  int t0, int tq, int C, int NH, int NKV);

/* Fused softmax + cross-entropy: logits (N,Vp), targets (N) in [0,V) ->
 * losses (N) = -log softmax(logits[:V])[target], lse (N) saved for backward. */
PARLM_API parlm_status parlm_crossentropy_forward(float *losses, float *lse, const float *logits,
                                                  const int32_t *targets, int64_t N, int V,
                                                  int Vp);

/* dlogits (N,Vp) = (softmax(logits) - onehot(target)) * dloss[r] on the first V columns,
 * 0 on the padding. WRITTEN, not accumulated; dlogits may be logits (in place, so no
 * probability tensor outlives the call). dloss (N) is dL/dloss[r] (e.g. 1/N for a mean). */
PARLM_API parlm_status parlm_crossentropy_backward(float *dlogits, const float *logits,
                                                   const int32_t *targets, const float *lse,
                                                   const float *dloss, int64_t N, int V, int Vp);

/* out (B,T,C) = wte[tokens] (V,C) + wpe[t] (>= T, C); every token must be in [0,V). */
PARLM_API parlm_status parlm_embedding_forward(float *out, const int32_t *tokens,
                                               const float *wte, const float *wpe, int B, int T,
                                               int C, int V);

/* dwte[tokens] += dout (B,T,C), dwpe[t] += dout: deterministic scatter-add. */
PARLM_API parlm_status parlm_embedding_backward(float *dwte, float *dwpe, const float *dout,
                                                const int32_t *tokens, int B, int T, int C,
                                                int V);

/* ---- vocab-parallel loss and embedding (tensor parallelism, Megatron-LM) -------------
 * Each of tp ranks holds the logit columns and the token-embedding rows [v0, v0 + Vs) of
 * the padded vocabulary; of these only those < V are real, the rest is padding. The
 * (N,Vp) logits are never gathered: the ranks exchange 2 floats per row (all-gather of
 * the partials) for the loss, and all-reduce the (N,C) lookups for the embedding. */

/* Cross-entropy, step 1. logits (N,Vs) of this slice -> part (N,2): per row the
 * log-sum-exp of the slice's real columns (-inf when it has none), and the target's
 * logit if the target lies in the slice, else 0. targets (N) in [0,V) (full ids). */
PARLM_API parlm_status parlm_crossentropy_vp_partial(float *part, const float *logits,
                                                     const int32_t *targets, int64_t N, int v0,
                                                     int Vs, int V);
/* Step 2. gathered (tp,N,2): the parts of the tp slices -> losses (N) and lse (N) as
 * parlm_crossentropy_forward gives over the whole vocabulary (up to rounding: the sum of
 * exponentials is grouped by slice). Same gathered bits, same results on every rank. */
PARLM_API parlm_status parlm_crossentropy_vp_combine(float *losses, float *lse,
                                                     const float *gathered, int64_t N, int tp);
/* dlogits (N,Vs) = (softmax - onehot(target)) * dloss[r] on the slice's real columns,
 * from the combined lse; 0 on its padding. Written, not accumulated; may be logits. */
PARLM_API parlm_status parlm_crossentropy_vp_backward(float *dlogits, const float *logits,
                                                      const int32_t *targets, const float *lse,
                                                      const float *dloss, int64_t N, int v0,
                                                      int Vs, int V);

/* out (N,C) = wte[tokens[r] - v0] (wte: the slice's Vs rows) for tokens in the slice, 0
 * for the others. Summed over the slices (all-reduce: one term per row is nonzero, so the
 * sum is exact) it is the full lookup; then add wpe (parlm_bias_forward per sequence).
 * tokens (N) in [0,V). */
PARLM_API parlm_status parlm_embedding_vp_forward(float *out, const int32_t *tokens,
                                                  const float *wte, int64_t N, int C, int v0,
                                                  int Vs, int V);
/* dwte[tokens[r] - v0] += dout[r] for the tokens in the slice and, if dwpe is not NULL,
 * dwpe[t] += dout (B,T,C), rows in order: bitwise the rows parlm_embedding_backward
 * writes, given the same dout. */
PARLM_API parlm_status parlm_embedding_vp_backward(float *dwte, float *dwpe, const float *dout,
                                                   const int32_t *tokens, int B, int T, int C,
                                                   int v0, int Vs, int V);

typedef struct parlm_adamw_cfg {
    float lr, beta1, beta2, eps, weight_decay;
} parlm_adamw_cfg;

/* One AdamW step of n parameters at step t >= 1 (bias corrections 1 - beta^t), with the
 * gradient multiplied by grad_scale first (1, or the clipping factor). */
PARLM_API parlm_status parlm_adamw_update(float *params, const float *grads, float *m, float *v,
                                          int64_t n, const parlm_adamw_cfg *cfg, int64_t t,
                                          float grad_scale);

/* *out = sum of x[i]^2 (accumulated in double; deterministic per thread count). */
PARLM_API parlm_status parlm_sumsq(const float *x, int64_t n, double *out);

#ifdef __cplusplus
}
#endif
#endif
