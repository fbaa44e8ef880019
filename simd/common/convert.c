/* simd/common/convert.c — f32 <-> bf16, written once over the per-ISA vector layer and
 * compiled once per ISA (simd/local.am puts that ISA's directory first on the include
 * path, so "vec.h" is its header). The rounding itself (nearest even, NaN stays NaN,
 * bitwise the scalar reference) lives in vec.h: the loop here only walks the array. */
#include "vec.h"

#include "../kernels.h"

void VEC_ISA_NAME(convert_fill)(parlm_kernels *k);

/* x (n) f32 -> y (n) bf16: pairs of vectors (one pack on AVX2/NEON), then the tail */
static void f32_to_bf16(const float *x, uint16_t *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 2 * VF_LANES <= n; i += 2 * VF_LANES)
        vf_store_bf16x2(y + i, vf_load(x + i), vf_load(x + i + VF_LANES));
    for (; i < n; i += VF_LANES)
        vf_store_bf16_n(y + i, n - i, vf_load_n(x + i, n - i));
}

/* x (n) bf16 -> y (n) f32, exact */
static void bf16_to_f32(const uint16_t *x, float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + VF_LANES <= n; i += VF_LANES)
        vf_store(y + i, vf_load_bf16(x + i));
    if (i < n)
        vf_store_n(y + i, n - i, vf_load_bf16_n(x + i, n - i));
}

void VEC_ISA_NAME(convert_fill)(parlm_kernels *k)
{
    k->f32_to_bf16 = f32_to_bf16;
    k->bf16_to_f32 = bf16_to_f32;
}
