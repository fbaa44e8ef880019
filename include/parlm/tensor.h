/* parlm/tensor.h — a small dense tensor: f32 or bf16, up to 4 dims, row-major.
 * A tensor either owns its storage (parlm_tensor_alloc: 64-byte aligned, freed by
 * parlm_tensor_free) or borrows it (parlm_tensor_wrap, parlm_tensor_view: freeing a
 * view releases nothing). The struct is a plain value; copying it copies a borrow. */
#ifndef PARLM_TENSOR_H
#define PARLM_TENSOR_H
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PARLM_MAX_DIMS 4
#define PARLM_ALIGN 64

typedef enum parlm_dtype { PARLM_F32 = 0, PARLM_BF16 = 1 } parlm_dtype;

typedef struct parlm_tensor {
    void *data;
    parlm_dtype dtype;
    int ndim;
    int64_t shape[PARLM_MAX_DIMS];
    int64_t stride[PARLM_MAX_DIMS]; /* in elements; row-major: stride[ndim-1] == 1 */
    int owns;                       /* 1 if parlm_tensor_free releases data */
} parlm_tensor;

/* Bytes per element of a dtype (4 or 2); 0 for an unknown dtype. */
PARLM_API size_t parlm_dtype_size(parlm_dtype dt);

/* Allocates zeroed, 64-byte aligned storage for a contiguous tensor of `shape`.
 * Errors: PARLM_EINVAL (null, ndim outside 1..4, a dim < 1, unknown dtype),
 * PARLM_ENOMEM (size overflows or allocation fails). On error *t is left empty. */
PARLM_API parlm_status parlm_tensor_alloc(parlm_tensor *t, parlm_dtype dt, int ndim,
                                          const int64_t *shape);

/* Describes caller-owned contiguous memory as a tensor (not freed by parlm). */
PARLM_API parlm_status parlm_tensor_wrap(parlm_tensor *t, void *data, parlm_dtype dt, int ndim,
                                         const int64_t *shape);

/* A borrowed view of base: rows [row0, row0 + nrows) along dimension 0. */
PARLM_API parlm_status parlm_tensor_view_rows(parlm_tensor *view, const parlm_tensor *base,
                                              int64_t row0, int64_t nrows);

/* Same storage, new contiguous shape with the same number of elements (a borrow). */
PARLM_API parlm_status parlm_tensor_reshape(parlm_tensor *view, const parlm_tensor *base,
                                            int ndim, const int64_t *shape);

/* Releases owned storage (no-op for views, wraps, NULL) and empties *t. */
PARLM_API void parlm_tensor_free(parlm_tensor *t);

PARLM_API int64_t parlm_tensor_numel(const parlm_tensor *t);
PARLM_API size_t parlm_tensor_nbytes(const parlm_tensor *t);
/* 1 if the elements are densely packed in row-major order. */
PARLM_API int parlm_tensor_is_contiguous(const parlm_tensor *t);

/* 64-byte aligned allocation with overflow-checked size n * elem; NULL on failure.
 * Free with parlm_free. */
PARLM_API void *parlm_alloc(size_t n, size_t elem);
PARLM_API void parlm_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
