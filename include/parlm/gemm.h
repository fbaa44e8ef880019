/* parlm/gemm.h — dense matrix multiply, BLAS-style, row-major.
 * C = alpha * op(A) * op(B) + beta * C with op(X) = X or X^T. op(A) is M x K, op(B) is
 * K x N, C is M x N; lda/ldb/ldc are row strides in elements (>= the stored row width).
 * beta == 0 means C is not read (it may hold garbage or NaN). Threaded with OpenMP
 * over the current team (omp_get_max_threads()); the result bits do not depend on the
 * thread count (each element is summed by one thread in an order fixed by the caches).
 * Errors (PARLM_EINVAL): null pointers, M/N/K < 1, a leading dim below the row width,
 * op(A) and op(B) both transposed (TT is not supported), aliasing of C with A or B. */
#ifndef PARLM_GEMM_H
#define PARLM_GEMM_H
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum parlm_trans { PARLM_NO_TRANS = 0, PARLM_TRANS = 1 } parlm_trans;

/* f32 GEMM (NN, NT, TN). M == 1 goes to the GEMV kernels. */
PARLM_API parlm_status parlm_sgemm(parlm_trans ta, parlm_trans tb, int64_t M, int64_t N,
                                   int64_t K, float alpha, const float *A, int64_t lda,
                                   const float *B, int64_t ldb, float beta, float *C,
                                   int64_t ldc);

/* bf16 inputs, f32 accumulation and output (NN, NT, TN). By the path parlm/isa.h's
 * parlm_bf16_path_current() names: "widen" converts to f32 while packing and runs the f32
 * micro-kernel (then the result is the f32 GEMM of the widened inputs, bit for bit);
 * "dot" multiplies bf16 pairs (vdpbf16ps where the CPU has AVX512-BF16). */
PARLM_API parlm_status parlm_gemm_bf16(parlm_trans ta, parlm_trans tb, int64_t M, int64_t N,
                                       int64_t K, float alpha, const uint16_t *A, int64_t lda,
                                       const uint16_t *B, int64_t ldb, float beta, float *C,
                                       int64_t ldc);

/* f32 A, bf16 B (weights), f32 accumulation and output (NN, NT, TN): B is widened to f32
 * while packed and the f32 micro-kernel runs, whatever the bf16 path; the result is the
 * f32 GEMM of A and the widened B, bit for bit (M > 1). Where the bf16 path is "widen" this is
 * what a bf16-weight layer wants: bf16 storage, f32 speed, no rounding of activations.
 * M == 1 with op(B) = B^T is the bf16-weight GEMV. */
PARLM_API parlm_status parlm_gemm_f32_bf16(parlm_trans ta, parlm_trans tb, int64_t M,
                                           int64_t N, int64_t K, float alpha, const float *A,
                                           int64_t lda, const uint16_t *B, int64_t ldb,
                                           float beta, float *C, int64_t ldc);

/* y = alpha * op(A) x + beta * y, A is rows x cols row-major (lda).
 * NO_TRANS: y has rows entries (dot of each row with x; the decode case out = W x).
 * TRANS:    y has cols entries. */
PARLM_API parlm_status parlm_sgemv(parlm_trans ta, int64_t rows, int64_t cols, float alpha,
                                   const float *A, int64_t lda, const float *x, float beta,
                                   float *y);

/* As parlm_sgemv NO_TRANS with bf16 A (weights), f32 x and y. */
PARLM_API parlm_status parlm_gemv_bf16(int64_t rows, int64_t cols, float alpha,
                                       const uint16_t *A, int64_t lda, const float *x, float beta,
                                       float *y);


/* parlm_sgemm's backend: native (the default) or OpenBLAS's cblas_sgemm, after the same
 * argument checks (bf16 always stays native). PARLM_EUNSUPPORTED if the library was built
 * without OpenBLAS (the backend stays native). The library reads no environment: programs
 * set this from PARLM_GEMM=openblas at start-up (apps/cli.c). Process-wide; set it before
 * GEMMs run on other threads (it is an atomic, so a change meanwhile is no data race, but
 * GEMMs already running may still take the old backend). */
typedef enum parlm_gemm_backend {
    PARLM_GEMM_NATIVE = 0,
    PARLM_GEMM_OPENBLAS = 1,
} parlm_gemm_backend;
PARLM_API parlm_status parlm_gemm_set_backend(parlm_gemm_backend backend);

/* Blocking sizes in use (from the cache sizes hwloc reports for this machine). */
typedef struct parlm_gemm_blocking {
    int64_t mc, kc, nc; /* KC and MC from the L2 size, NC from the thread's share of L3 */
} parlm_gemm_blocking;

PARLM_API parlm_gemm_blocking parlm_gemm_blocking_get(void);

#ifdef __cplusplus
}
#endif
#endif
