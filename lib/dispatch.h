/* lib/dispatch.h — internal: the kernel table in use. */
#ifndef PARLM_LIB_DISPATCH_H
#define PARLM_LIB_DISPATCH_H
#include "parlm/isa.h"
#include "../simd/kernels.h"

/* The table of the current ISA (initialized on first call; never NULL). */
const parlm_kernels *parlm_kern(void);

/* Fills *k with the table of isa; PARLM_EUNSUPPORTED if it cannot run here. */
parlm_status parlm_kernels_for(parlm_isa isa, parlm_kernels *k);
#endif
