/* simd/avx2/vnni.c — the AVX-VNNI upgrade of the avx2 table (this library is built with
 * -mavxvnni and used only when cpuid reports the extension): the quantized GEMVs of
 * simd/common/qgemv.c, compiled here again with the VEX vpdpbusd as the block dot, for
 * cores that have AVX-VNNI with or without AVX-512. */
#include "../kernels.h"

void parlm_avxvnni_qgemv_fill(parlm_kernels *k);

void parlm_kernels_avxvnni(parlm_kernels *k)
{
    parlm_avxvnni_qgemv_fill(k);
}
