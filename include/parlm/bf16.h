/* parlm/bf16.h — f32 <-> bf16 arrays with the SIMD kernels (the storage type of bf16
 * weights and activations). Single values: parlm/quant.h's *_scalar conversions. */
#ifndef PARLM_BF16_H
#define PARLM_BF16_H
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* f32 <-> bf16, round to nearest even, NaN preserved. Threaded for large n. */
PARLM_API parlm_status parlm_f32_to_bf16(const float *x, uint16_t *y, int64_t n);
PARLM_API parlm_status parlm_bf16_to_f32(const uint16_t *x, float *y, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
