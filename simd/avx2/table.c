/* simd/avx2/table.c — the avx2 kernel table: starts from the scalar reference and
 * every group overrides its entries (tests check nothing is left at scalar). */
#include "avx2.h"

void parlm_kernels_avx2(parlm_kernels *k)
{
    parlm_kernels_scalar(k);
    k->name = "avx2";
    parlm_avx2_gemm_fill(k);
    parlm_avx2_convert_fill(k);
    parlm_avx2_eltwise_fill(k);
    parlm_avx2_nn_fill(k);
    parlm_avx2_attn_fill(k);
    parlm_avx2_llama_fill(k);
    parlm_avx2_qgemv_fill(k);
}
