/* lib/core/qgemv.c — y = W x with Q8_0 / Q4_0 weights (decode), over the kernel table's
 * quantized GEMV: x is quantized once, then threads take contiguous slices of rows (each
 * row is independent, so the result does not depend on the thread count). */
#include <omp.h>
#include <stdlib.h>

#include "../../base/error.h"
#include "dispatch.h"
#include "parallel.h"
#include "parlm/quant.h"

/* weights per thread below which another thread costs more than it saves (as f32 GEMV) */
#define QGEMV_GRAIN ((int64_t)1 << 16)

parlm_status parlm_qgemv(int type, int64_t rows, int64_t k, const void *w, const float *x,
                         float *y)
{
    static const char *fn = "parlm_qgemv";
    if (type != PARLM_WT_Q8_0 && type != PARLM_WT_Q4_0)
        return parlm_error(PARLM_EUNSUPPORTED, "%s: weight type %d (%s) is not q8_0 or q4_0", fn,
                           type, parlm_wtype_name(type) ? parlm_wtype_name(type) : "unknown");
    if (rows < 0)
        return parlm_error(PARLM_EINVAL, "%s: rows must be >= 0, got %lld", fn, (long long)rows);
    if (k <= 0 || k % PARLM_QBLOCK)
        return parlm_error(PARLM_EINVAL, "%s: k must be a positive multiple of %d, got %lld", fn,
                           PARLM_QBLOCK, (long long)k);
    if (!w || !x || !y)
        return parlm_error(PARLM_EINVAL, "%s: %s is NULL", fn, !w ? "w" : !x ? "x" : "y");
    if (rows == 0)
        return PARLM_OK;
    uint64_t ldw;
    parlm_status st = parlm_wtype_bytes(type, (uint64_t)k, &ldw);
    if (st)
        return st;
    if (rows > INT64_MAX / k || (uint64_t)k / PARLM_QBLOCK > SIZE_MAX / sizeof(parlm_q8x))
        return parlm_error(PARLM_EINVAL, "%s: %lld x %lld weights overflow a size", fn,
                           (long long)rows, (long long)k);
    parlm_q8x *qx = malloc((size_t)(k / PARLM_QBLOCK) * sizeof *qx);
    if (!qx)
        return parlm_error(PARLM_ENOMEM, "%s: no memory for %lld quantized activations", fn,
                           (long long)k);
    const parlm_kernels *kt = parlm_kern();
    kt->q8_quantize(k, x, qx);
    void (*gemv)(int64_t, int64_t, const void *, int64_t, const parlm_q8x *, float, float,
                 float *) = type == PARLM_WT_Q8_0 ? kt->q8_0_gemv : kt->q4_0_gemv;
    int nt = parlm_threads_for(rows * k, QGEMV_GRAIN, omp_get_max_threads());
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t i0, i1;
        parlm_split(rows, 8, omp_get_thread_num(), omp_get_num_threads(), &i0, &i1);
        if (i0 < i1)
            gemv(i1 - i0, k, (const uint8_t *)w + (uint64_t)i0 * ldw, (int64_t)ldw, qx, 1.0f, 0.0f,
                 y + i0);
    }
    free(qx);
    return PARLM_OK;
}
