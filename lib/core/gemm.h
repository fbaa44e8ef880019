/* lib/core/gemm.h — internal: the GEMM blocking rule and thread grid, as pure functions of
 * cache sizes and shapes so that tests can check them with fixed numbers. */
#ifndef PARLM_LIB_GEMM_H
#define PARLM_LIB_GEMM_H
#include <stdint.h>

#include "parlm/gemm.h"
#include "../../simd/kernels.h"

/* Blocking for a micro-kernel of mr x nr (32-bit words per k step: f32 elements, or bf16
 * k pairs) given the L1 / L2 / L3 sizes in bytes and the threads sharing the L3:
 *   kc: 256 rows x KC fill 3/4 of L2 (256 <= KC <= 1536): as deep as L2 allows, since
 *       the C tile is read and written once per KC block, with room for the KC x NR B
 *       micro-panel the calls of an MC block share;
 *   mc: the MC x KC A block fills twice L2 (512 rows unless KC is clamped): A streams
 *       into the kernels at a rate L3 serves, B panels come back from L3 once per block;
 *   nc: a KC x NC B block and the MC x NC block of C it updates fill half of the
 *       thread's share of L3 (C is re-read once per KC block).
 * L1 does not bound KC: the kernels stream the B micro-panel from L2 at full speed (one
 * 64-byte line per 4 FMA cycles). kc is a multiple of 16, mc of mr, nc of nr; sizes <= 0
 * take PARLM_TOPO_L*_DEFAULT. KC never depends on the thread count, so neither does the
 * order of the sums (results are the same bits for any number of threads). */
parlm_gemm_blocking parlm_gemm_blocking_for(int64_t l1, int64_t l2, int64_t l3, int l3_threads,
                                            int mr, int nr);

/* Test-only (internal, not exported): the calling thread's GEMMs use these block sizes
 * (rounded to 16 / mr / nr) instead of the cache-derived ones, so that small shapes cross
 * every block boundary; NULL restores the default. Thread-local, so GEMMs called from
 * other threads never see it and nothing races. */
void parlm_gemm_blocking_override(const parlm_gemm_blocking *b);

/* Thread grid tm x tn (tm * tn == nt) over an M x N output cut into mr-row and nr-col
 * tiles: the one whose largest per-thread block (its real rows and columns, as
 * run_gemm cuts them) plus its packing costs least. */
void parlm_gemm_grid(int64_t M, int64_t N, int mr, int nr, int nt, int *tm, int *tn);

/* The widening pack (simd/kernels.h, wpack) composed from k's bf16_to_f32 and spack, 64 k
 * at a time through a block on the stack: what the widen path packs with when k has no
 * wpack of its own (k->wpack == NULL). */
void parlm_gemm_widen_pack(const parlm_kernels *k, int64_t kc, int64_t mn, const uint16_t *x,
                           int64_t rs, int64_t cs, int w, float *out);

/* 1 if parlm_sgemm hands its work to cblas_sgemm (parlm_gemm_set_backend). */
int parlm_gemm_uses_openblas(void);
#endif
