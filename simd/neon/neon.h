/* simd/neon/neon.h — fillers of the neon kernel groups (internal). */
#ifndef PARLM_SIMD_NEON_H
#define PARLM_SIMD_NEON_H
#include "../kernels.h"

void parlm_neon_gemm_fill(parlm_kernels *k);       /* gemm.c: sgemm/bgemm micro-kernels, gemv */
void parlm_neon_convert_fill(parlm_kernels *k);    /* common/convert.c: f32 <-> bf16 */
void parlm_neon_eltwise_fill(parlm_kernels *k);    /* common/eltwise.c: add, bias, gelu, layernorm, softmax */
void parlm_neon_nn_fill(parlm_kernels *k);         /* common/nn.c: cross-entropy, embeddings, AdamW, sumsq */
void parlm_neon_attn_fill(parlm_kernels *k);       /* common/attn.c: causal flash attention */
void parlm_neon_llama_fill(parlm_kernels *k);      /* common/llama.c: RMSNorm, RoPE, SwiGLU */
void parlm_neon_qgemv_fill(parlm_kernels *k);     /* common/qgemv.c: Q8_0 / Q4_0 GEMV */
#endif
