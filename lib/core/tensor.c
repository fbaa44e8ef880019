/* lib/core/tensor.c — tensor storage and views. Sizes are checked before they are
 * multiplied: a shape whose byte count overflows is an error, not a short buffer. */
#include <stdlib.h>
#include <string.h>

#include "../../base/error.h"
#include "parlm/tensor.h"

size_t parlm_dtype_size(parlm_dtype dt)
{
    switch (dt) {
    case PARLM_F32: return 4;
    case PARLM_BF16: return 2;
    }
    return 0;
}

void *parlm_alloc(size_t n, size_t elem)
{
    if (elem != 0 && n > (SIZE_MAX - PARLM_ALIGN) / elem)
        return NULL;
    size_t bytes = n * elem;
    bytes = (bytes + PARLM_ALIGN - 1) / PARLM_ALIGN * PARLM_ALIGN;
    if (bytes == 0)
        bytes = PARLM_ALIGN;
    return aligned_alloc(PARLM_ALIGN, bytes);
}

void parlm_free(void *p) { free(p); }

static parlm_status check_shape(const char *fn, parlm_dtype dt, int ndim, const int64_t *shape,
                                int64_t *numel)
{
    if (!shape)
        return parlm_error(PARLM_EINVAL, "%s: shape is NULL", fn);
    if (ndim < 1 || ndim > PARLM_MAX_DIMS)
        return parlm_error(PARLM_EINVAL, "%s: ndim must be 1..%d, got %d", fn, PARLM_MAX_DIMS,
                           ndim);
    if (parlm_dtype_size(dt) == 0)
        return parlm_error(PARLM_EINVAL, "%s: unknown dtype %d", fn, (int)dt);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1)
            return parlm_error(PARLM_EINVAL, "%s: dim %d must be >= 1, got %lld", fn, i,
                               (long long)shape[i]);
        if (n > INT64_MAX / 4 / shape[i])
            return parlm_error(PARLM_ENOMEM, "%s: shape too large (overflows)", fn);
        n *= shape[i];
    }
    *numel = n;
    return PARLM_OK;
}

static void set_contiguous(parlm_tensor *t, void *data, parlm_dtype dt, int ndim,
                           const int64_t *shape, int owns)
{
    memset(t, 0, sizeof *t);
    t->data = data;
    t->dtype = dt;
    t->ndim = ndim;
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->stride[i] = s;
        s *= shape[i];
    }
    t->owns = owns;
}

parlm_status parlm_tensor_alloc(parlm_tensor *t, parlm_dtype dt, int ndim, const int64_t *shape)
{
    if (!t)
        return parlm_error(PARLM_EINVAL, "parlm_tensor_alloc: tensor is NULL");
    memset(t, 0, sizeof *t);
    int64_t n;
    parlm_status st = check_shape("parlm_tensor_alloc", dt, ndim, shape, &n);
    if (st != PARLM_OK)
        return st;
    void *p = parlm_alloc((size_t)n, parlm_dtype_size(dt));
    if (!p)
        return parlm_error(PARLM_ENOMEM, "parlm_tensor_alloc: cannot allocate %lld elements",
                           (long long)n);
    memset(p, 0, (size_t)n * parlm_dtype_size(dt));
    set_contiguous(t, p, dt, ndim, shape, 1);
    return PARLM_OK;
}

parlm_status parlm_tensor_wrap(parlm_tensor *t, void *data, parlm_dtype dt, int ndim,
                               const int64_t *shape)
{
    if (!t || !data)
        return parlm_error(PARLM_EINVAL, "parlm_tensor_wrap: null tensor or data");
    int64_t n;
    parlm_status st = check_shape("parlm_tensor_wrap", dt, ndim, shape, &n);
    if (st != PARLM_OK)
        return st;
    set_contiguous(t, data, dt, ndim, shape, 0);
    return PARLM_OK;
}

parlm_status parlm_tensor_view_rows(parlm_tensor *view, const parlm_tensor *base, int64_t row0,
                                    int64_t nrows)
{
    if (!view || !base || !base->data)
        return parlm_error(PARLM_EINVAL, "parlm_tensor_view_rows: null view or base");
    if (row0 < 0 || nrows < 1 || row0 > base->shape[0] - nrows)
        return parlm_error(PARLM_EINVAL,
                           "parlm_tensor_view_rows: rows [%lld, %lld) outside [0, %lld)",
                           (long long)row0, (long long)(row0 + nrows),
                           (long long)base->shape[0]);
    *view = *base;
    view->owns = 0;
    view->shape[0] = nrows;
    view->data = (char *)base->data + (size_t)(row0 * base->stride[0]) * parlm_dtype_size(base->dtype);
    return PARLM_OK;
}

parlm_status parlm_tensor_reshape(parlm_tensor *view, const parlm_tensor *base, int ndim,
                                  const int64_t *shape)
{
    if (!view || !base || !base->data)
        return parlm_error(PARLM_EINVAL, "parlm_tensor_reshape: null view or base");
    if (!parlm_tensor_is_contiguous(base))
        return parlm_error(PARLM_EINVAL, "parlm_tensor_reshape: base is not contiguous");
    int64_t n;
    parlm_status st = check_shape("parlm_tensor_reshape", base->dtype, ndim, shape, &n);
    if (st != PARLM_OK)
        return st;
    if (n != parlm_tensor_numel(base))
        return parlm_error(PARLM_EINVAL, "parlm_tensor_reshape: %lld elements cannot become %lld",
                           (long long)parlm_tensor_numel(base), (long long)n);
    set_contiguous(view, base->data, base->dtype, ndim, shape, 0);
    return PARLM_OK;
}

void parlm_tensor_free(parlm_tensor *t)
{
    if (!t)
        return;
    if (t->owns)
        free(t->data);
    memset(t, 0, sizeof *t);
}

int64_t parlm_tensor_numel(const parlm_tensor *t)
{
    if (!t || t->ndim < 1)
        return 0;
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

size_t parlm_tensor_nbytes(const parlm_tensor *t)
{
    return t ? (size_t)parlm_tensor_numel(t) * parlm_dtype_size(t->dtype) : 0;
}

int parlm_tensor_is_contiguous(const parlm_tensor *t)
{
    if (!t || t->ndim < 1)
        return 0;
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s)
            return 0;
        s *= t->shape[i];
    }
    return 1;
}
