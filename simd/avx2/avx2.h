/* simd/avx2/avx2.h — fillers of the avx2 kernel groups (internal). */
#ifndef PARLM_SIMD_AVX2_H
#define PARLM_SIMD_AVX2_H
#include "../kernels.h"

void parlm_avx2_gemm_fill(parlm_kernels *k);       /* gemm.c: sgemm/bgemm micro-kernels, gemv */
void parlm_avx2_convert_fill(parlm_kernels *k);    /* common/convert.c: f32 <-> bf16 */
void parlm_avx2_eltwise_fill(parlm_kernels *k);    /* common/eltwise.c: add, bias, gelu, layernorm, softmax */
void parlm_avx2_nn_fill(parlm_kernels *k);         /* common/nn.c: cross-entropy, embeddings, AdamW, sumsq */
void parlm_avx2_attn_fill(parlm_kernels *k);       /* common/attn.c: causal flash attention */
void parlm_avx2_llama_fill(parlm_kernels *k);      /* common/llama.c: RMSNorm, RoPE, SwiGLU */
void parlm_avx2_qgemv_fill(parlm_kernels *k);     /* common/qgemv.c: Q8_0 / Q4_0 GEMV */
#endif
