/* simd/neon/table.c — the neon kernel table: starts from the scalar reference and
 * every group overrides its entries (tests check nothing is left at scalar). */
#include "neon.h"

void parlm_kernels_neon(parlm_kernels *k)
{
    parlm_kernels_scalar(k);
    k->name = "neon";
    parlm_neon_gemm_fill(k);
    parlm_neon_convert_fill(k);
    parlm_neon_eltwise_fill(k);
    parlm_neon_nn_fill(k);
    parlm_neon_attn_fill(k);
    parlm_neon_llama_fill(k);
    parlm_neon_qgemv_fill(k);
}
