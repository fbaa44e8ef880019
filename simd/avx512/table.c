/* simd/avx512/table.c — the avx512 kernel table: starts from the scalar reference and
 * every group overrides its entries (tests check nothing is left at scalar). */
#include "avx512.h"

void parlm_kernels_avx512(parlm_kernels *k)
{
    parlm_kernels_scalar(k);
    k->name = "avx512";
    parlm_avx512_gemm_fill(k);
    parlm_avx512_convert_fill(k);
    parlm_avx512_eltwise_fill(k);
    parlm_avx512_nn_fill(k);
    parlm_avx512_attn_fill(k);
    parlm_avx512_llama_fill(k);
    parlm_avx512_qgemv_fill(k);
}
