/* simd/avx512/vnni.c — the AVX512-VNNI upgrade of the avx512 table (this library is
 * built with -mavx512vnni and used only when cpuid reports the extension): the quantized
 * GEMVs of simd/common/qgemv.c, compiled here again with vpdpbusd as the block dot. */
#include "../kernels.h"

void parlm_avx512vnni_qgemv_fill(parlm_kernels *k);

void parlm_kernels_avx512vnni(parlm_kernels *k)
{
    parlm_avx512vnni_qgemv_fill(k);
}
