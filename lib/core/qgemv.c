/* lib/core/qgemv.c — y = W x with Q8_0 / Q4_0 weights (decode), over the kernel table's
 * quantized GEMV: x is quantized once, then threads take contiguous slices of rows (each
 * row is independent, so the result does not depend on the thread count). Also the
 * repacking of rows 8 at a time (simd/kernels.h's layout) and the GEMV over it. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/error.h"
#include "dispatch.h"
#include "parallel.h"
#include "parlm/quant.h"

/* weights per thread below which another thread costs more than it saves (as f32 GEMV) */
#define QGEMV_GRAIN ((int64_t)1 << 16)

/* the checks every entry shares; *ldw: bytes of a plain row */
static parlm_status qcheck(const char *fn, int type, int64_t rows, int64_t k, const void *w,
                           const void *x, const void *y, uint64_t *ldw)
{
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
    parlm_status st = parlm_wtype_bytes(type, (uint64_t)k, ldw);
    if (st)
        return st;
    if ((rows + 8) > INT64_MAX / k || (uint64_t)k / PARLM_QBLOCK > SIZE_MAX / sizeof(parlm_q8x) ||
        (uint64_t)(rows + 8) > UINT64_MAX / *ldw / 2)
        return parlm_error(PARLM_EINVAL, "%s: %lld x %lld weights overflow a size", fn,
                           (long long)rows, (long long)k);
    return PARLM_OK;
}

static parlm_status run(const char *fn, int type, int64_t rows, int64_t k, const void *w,
                        const float *x, float *y, int repacked)
{
    uint64_t ldw;
    parlm_status st = qcheck(fn, type, rows, k, w, x, y, &ldw);
    if (st || rows == 0)
        return st;
    parlm_q8x *qx = malloc((size_t)(k / PARLM_QBLOCK) * sizeof *qx);
    if (!qx)
        return parlm_error(PARLM_ENOMEM, "%s: no memory for %lld quantized activations", fn,
                           (long long)k);
    const parlm_kernels *kt = parlm_kern();
    kt->q8_quantize(k, x, qx);
    int q8 = type == PARLM_WT_Q8_0;
    int nt = parlm_threads_for(rows * k, QGEMV_GRAIN, omp_get_max_threads());
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t i0, i1;
        parlm_split(rows, 8, omp_get_thread_num(), omp_get_num_threads(), &i0, &i1);
        if (i0 < i1 && repacked)
            (q8 ? kt->q8_0r_gemv : kt->q4_0r_gemv)(i0, i1, k, w, qx, 1.0f, 0.0f, y + i0);
        else if (i0 < i1)
            (q8 ? kt->q8_0_gemv : kt->q4_0_gemv)(i1 - i0, k, (const uint8_t *)w + (uint64_t)i0 * ldw,
                                                 (int64_t)ldw, qx, 1.0f, 0.0f, y + i0);
    }
    free(qx);
    return PARLM_OK;
}

parlm_status parlm_qgemv(int type, int64_t rows, int64_t k, const void *w, const float *x,
                         float *y)
{
    return run("parlm_qgemv", type, rows, k, w, x, y, 0);
}

parlm_status parlm_qgemv_repacked(int type, int64_t rows, int64_t k, const void *wr,
                                  const float *x, float *y)
{
    return run("parlm_qgemv_repacked", type, rows, k, wr, x, y, 1);
}

parlm_status parlm_qrepack_bytes(int type, int64_t rows, int64_t k, uint64_t *bytes)
{
    static const char *fn = "parlm_qrepack_bytes";
    uint64_t ldw;
    int dummy = 0;
    if (!bytes)
        return parlm_error(PARLM_EINVAL, "%s: bytes is NULL", fn);
    parlm_status st = qcheck(fn, type, rows, k, &dummy, &dummy, &dummy, &ldw);
    if (st)
        return st;
    uint64_t gb = type == PARLM_WT_Q8_0 ? PARLM_Q8R_BLOCK : PARLM_Q4R_BLOCK;
    *bytes = (uint64_t)((rows + 7) / 8) * (uint64_t)(k / PARLM_QBLOCK) * gb;
    return PARLM_OK;
}

/* Group g, block b: the 8 rows' scales, then chunk c (4 weights of 8 rows) at 16 + 32c.
 * Q8_0 stores w + 128; Q4_0 keeps the file's bytes (q = w + 8), 4 at a time per row. */
parlm_status parlm_qrepack(int type, int64_t rows, int64_t k, const void *w, void *out)
{
    static const char *fn = "parlm_qrepack";
    uint64_t ldw, total;
    parlm_status st = qcheck(fn, type, rows, k, w, out, out, &ldw);
    if (st || (st = parlm_qrepack_bytes(type, rows, k, &total)))
        return st;
    const int q4 = type == PARLM_WT_Q4_0;
    const int64_t nb = k / PARLM_QBLOCK, gb = q4 ? PARLM_Q4R_BLOCK : PARLM_Q8R_BLOCK;
    uint8_t *o = out;
    memset(o, 0, (size_t)total); /* padding rows: scale 0, so they sum to 0 */
    for (int64_t i = 0; i < rows; i++) {
        int64_t j = i % 8;
        const uint8_t *row = (const uint8_t *)w + (uint64_t)i * ldw;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *src = row + b * (q4 ? 18 : 34);
            uint8_t *blk = o + ((i / 8) * nb + b) * gb;
            blk[2 * j] = src[0], blk[2 * j + 1] = src[1];
            for (int c = 0; c < (q4 ? 4 : 8); c++)
                for (int t = 0; t < 4; t++) {
                    /* ggml's byte m holds weights m and m + 16 already */
                    uint8_t v = src[2 + 4 * c + t];
                    blk[16 + 32 * c + 4 * j + t] = q4 ? v : (uint8_t)(v ^ 0x80);
                }
        }
    }
    return PARLM_OK;
}
