/* simd/scalar/table.c — the reference kernel table. */
#include "scalar.h"

void parlm_kernels_scalar(parlm_kernels *k)
{
    k->name = "scalar";
    parlm_scalar_gemm_fill(k);
    parlm_scalar_eltwise_fill(k);
    parlm_scalar_nn_fill(k);
    parlm_scalar_llama_fill(k);
    parlm_scalar_quant_fill(k);
}
