/* lib/core/dispatch.h — internal: the kernel table in use. */
#ifndef PARLM_LIB_DISPATCH_H
#define PARLM_LIB_DISPATCH_H
#include "parlm/isa.h"
#include "../../simd/kernels.h"

/* The table of the current ISA (initialized on first call; never NULL). */
const parlm_kernels *parlm_kern(void);

/* Fills *k with the table of isa; PARLM_EUNSUPPORTED if it cannot run here. */
parlm_status parlm_kernels_for(parlm_isa isa, parlm_kernels *k);

/* Times k's bf16 k-pair micro-kernel and its f32 micro-kernel on one core (cache-resident
 * panels, best of several runs, a few ms): GFLOP/s of each. The bf16 path choice. */
parlm_status parlm_bf16_calibrate(const parlm_kernels *k, double *dot_gflops,
                                  double *f32_gflops);
#endif
