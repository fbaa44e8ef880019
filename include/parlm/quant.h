/* parlm/quant.h — weight storage types shared by the model file formats (GGUF,
 * safetensors): f32, f16, bf16 and ggml's 8- and 4-bit block types, with scalar reference
 * conversions. Type codes are ggml's (the numbers GGUF stores), so a file's type field is
 * one of these directly. Q8_0 and Q4_0 hold 32 weights per block with an f16 scale d:
 * Q8_0 = d, 32 int8 (x = d*q); Q4_0 = d, 16 bytes of nibbles (x = d*(q-8); byte j holds
 * weight j in its low nibble and weight j+16 in its high one). */
#ifndef PARLM_QUANT_H
#define PARLM_QUANT_H
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum parlm_wtype {
    PARLM_WT_F32 = 0,
    PARLM_WT_F16 = 1,
    PARLM_WT_Q4_0 = 2,
    PARLM_WT_Q8_0 = 8,
    PARLM_WT_BF16 = 30,
} parlm_wtype;

#define PARLM_QBLOCK 32 /* weights per Q8_0 / Q4_0 block */

/* "f32", "f16", "bf16", "q8_0", "q4_0"; NULL for a type parlm does not support. */
PARLM_API const char *parlm_wtype_name(int type);
/* The type named by s (as parlm_wtype_name spells it, case-insensitive). */
PARLM_API parlm_status parlm_wtype_parse(const char *s, parlm_wtype *type);
/* Bytes that n elements of this type take; n must be a multiple of the block size (32
 * for the Q types). PARLM_EUNSUPPORTED for an unknown type, PARLM_EINVAL for a bad n,
 * PARLM_ENOMEM if the size overflows. */
PARLM_API parlm_status parlm_wtype_bytes(int type, uint64_t n, uint64_t *bytes);

/* IEEE half and bfloat16 one value at a time, rounding to nearest even; NaN stays NaN
 * (quiet). (parlm/bf16.h converts bf16 arrays with SIMD kernels.) */
PARLM_API uint16_t parlm_f32_to_f16(float x);
PARLM_API float parlm_f16_to_f32(uint16_t h);
PARLM_API uint16_t parlm_f32_to_bf16_scalar(float x);
PARLM_API float parlm_bf16_to_f32_scalar(uint16_t h);

/* x (n f32) -> out (parlm_wtype_bytes(type, n) bytes). Q8_0: d = max|x|/127 per block,
 * q = round(x/d); Q4_0: d = -m/8 where m is the block's value of largest magnitude (so
 * it maps to q = 0 exactly), q = clamp(round(x/d) + 8, 0, 15). A NaN or infinity in x is
 * PARLM_EINVAL for Q8_0 / Q4_0 (naming its index). */
PARLM_API parlm_status parlm_quantize(int type, const float *x, int64_t n, void *out);
/* in (type) -> out (n f32). */
PARLM_API parlm_status parlm_dequantize(int type, const void *in, int64_t n, float *out);

/* y = W x for W of `rows` rows of k weights stored as type (PARLM_WT_Q8_0 or
 * PARLM_WT_Q4_0; rows packed, parlm_wtype_bytes(type, k) bytes each), x and y f32.
 * x is quantized once to 8-bit blocks (scale max|x|/127 per 32, as Q8_0), so each
 * block's dot is an exact integer dot; y differs from the f32 product of the dequantized
 * W by at most about sum_b (d_x(b) / 2) sum_j |w_bj| (the activation rounding). Rows are
 * split over the OpenMP threads. PARLM_EINVAL for a NULL, rows < 0 or k not a positive
 * multiple of 32, PARLM_EUNSUPPORTED for another type, PARLM_ENOMEM. */
PARLM_API parlm_status parlm_qgemv(int type, int64_t rows, int64_t k, const void *w,
                                   const float *x, float *y);

/* Y (M, rows) = X (M, k) W^T for the same W as parlm_qgemv (plain rows of ggml blocks,
 * as a file stores them): the prefill of a model whose weights stay in their stored type.
 * Every row of X is quantized once to 8-bit blocks, then each thread takes a slice of W's
 * rows (multiples of 8) and runs them, a cache-sized chunk at a time, against every row of
 * X: W is read from memory once, and row i of Y is bitwise parlm_qgemv(W, row i of X)
 * (the same kernel and sums), whatever M and the thread count. ldx, ldy: floats between
 * rows (>= k, >= rows). Errors as parlm_qgemv's, and PARLM_EINVAL for M < 0 or a short
 * ldx / ldy. */
PARLM_API parlm_status parlm_qgemm(int type, int64_t M, int64_t rows, int64_t k, const void *w,
                                   const float *x, int64_t ldx, float *y, int64_t ldy);
/* Q8_0 / Q4_0 rows repacked 8 at a time for faster GEMVs (the layout parlm's decode keeps
 * its quantized copy in; simd/kernels.h documents it): per group of 8 rows and block of 32,
 * the 8 scales then the weights interleaved 4 at a time, as unsigned bytes. A file's rows
 * stay as stored; this is a copy. bytes: the size of the repacked matrix (rows rounded up
 * to 8, the padding rows zero). */
PARLM_API parlm_status parlm_qrepack_bytes(int type, int64_t rows, int64_t k, uint64_t *bytes);
/* w: rows of k weights of type (packed rows, as parlm_quantize writes them) -> out
 * (parlm_qrepack_bytes bytes). Errors as parlm_qgemv's. */
PARLM_API parlm_status parlm_qrepack(int type, int64_t rows, int64_t k, const void *w, void *out);
/* parlm_qgemv over a matrix that parlm_qrepack wrote: the same y up to the order of the
 * float sums (rows are split over the threads in groups of 8; bits do not depend on the
 * thread count). */
PARLM_API parlm_status parlm_qgemv_repacked(int type, int64_t rows, int64_t k, const void *wr,
                                            const float *x, float *y);

/* The layout parlm's decode keeps its Q8_0 / Q4_0 copy in, chosen per CPU and per type by
 * measured speed (which is faster depends on the core and the kernel set: on Zen 5 the
 * AVX2 set's 8-row Q8_0 kernel is about as fast as the plain-row one in cache, and NEON
 * without dotprod has only the scalar 8-row kernel):
 *   ROWS: the rows as stored (parlm_qgemv's kernels);
 *   R8:   repacked 8 rows at a time (parlm_qrepack, parlm_qgemv_repacked's kernels).
 * Chosen once per type, at the first call that needs it: PARLM_QLAYOUT=rows|r8 in the
 * environment forces both types; otherwise a short calibration (a few ms on one core)
 * times the kernel set's two GEMVs on a 3072 x 768 matrix (L3-resident, as a decode's
 * matrices are at best) and takes ROWS only when it is clearly (>= 1.1x) faster, so the
 * choice, and the decode's bits, stay the same from run to run. */
typedef enum parlm_qlayout { PARLM_QLAYOUT_ROWS = 0, PARLM_QLAYOUT_R8 = 1 } parlm_qlayout;

/* The layout for type (PARLM_WT_Q8_0 or PARLM_WT_Q4_0; any other type gets R8 and the
 * reason says so); *why (if not NULL) gets a one-line reason with the measured times. */
PARLM_API parlm_qlayout parlm_qlayout_current(int type, const char **why);

/* "rows" or "r8". */
PARLM_API const char *parlm_qlayout_name(parlm_qlayout layout);

/* Forces the layout of type (tests and benchmarks; not thread-safe against running
 * decodes; a model re-makes its copy at its next decode). */
PARLM_API parlm_status parlm_qlayout_select(int type, parlm_qlayout layout);

#ifdef __cplusplus
}
#endif
#endif
