/* simd/neon/dotprod.c — the dot-product (sdot) upgrade of the neon table (this library
 * is built with -march=armv8.2-a+dotprod and used only when HWCAP reports ASIMDDP): the
 * quantized GEMVs of simd/common/qgemv.c, compiled here again with vdotq_s32. */
#include "../kernels.h"

void parlm_neondot_qgemv_fill(parlm_kernels *k);

void parlm_kernels_neondot(parlm_kernels *k)
{
    parlm_neondot_qgemv_fill(k);
}
