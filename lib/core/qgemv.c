/* lib/core/qgemv.c — y = W x with Q8_0 / Q4_0 weights (decode), over the kernel table's
 * quantized GEMV: x is quantized once, then threads take contiguous slices of rows (each
 * row is independent, so the result does not depend on the thread count). Also the
 * repacking of rows 8 at a time (simd/kernels.h's layout) and the GEMV over it, and the
 * choice between the two layouts for the decode, by timing the kernel set's GEMVs. */
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../base/error.h"
#include "dispatch.h"
#include "parallel.h"
#include "parlm/quant.h"
#include "parlm/tensor.h"

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

/* bytes of W a chunk of rows may take: its rows stay in L1 while every row of X passes
 * (half of a 32 KiB L1D, leaving room for X's quantized row and the prefetched next
 * chunk) */
#define QGEMM_CHUNK_BYTES (16 * 1024)

parlm_status parlm_qgemm(int type, int64_t M, int64_t rows, int64_t k, const void *w,
                         const float *x, int64_t ldx, float *y, int64_t ldy)
{
    static const char *fn = "parlm_qgemm";
    uint64_t ldw;
    parlm_status st = qcheck(fn, type, rows, k, w, x, y, &ldw);
    if (st)
        return st;
    if (M < 0 || ldx < k || ldy < rows)
        return parlm_error(PARLM_EINVAL, "%s: M %lld, ldx %lld (k %lld), ldy %lld (rows %lld): "
                           "need M >= 0, ldx >= k, ldy >= rows", fn, (long long)M,
                           (long long)ldx, (long long)k, (long long)ldy, (long long)rows);
    if (M == 0 || rows == 0)
        return PARLM_OK;
    const int64_t nb = k / PARLM_QBLOCK;
    if ((uint64_t)M > SIZE_MAX / sizeof(parlm_q8x) / (uint64_t)nb)
        return parlm_error(PARLM_EINVAL, "%s: %lld rows of X overflow a size", fn, (long long)M);
    parlm_q8x *qx = malloc((size_t)(M * nb) * sizeof *qx);
    if (!qx)
        return parlm_error(PARLM_ENOMEM, "%s: no memory for %lld x %lld quantized activations",
                           fn, (long long)M, (long long)k);
    const parlm_kernels *kt = parlm_kern();
    const int q8 = type == PARLM_WT_Q8_0;
    int64_t chunk = (int64_t)(QGEMM_CHUNK_BYTES / ldw) / 8 * 8;
    if (chunk < 8)
        chunk = 8;
    int nt = parlm_threads_for(M * rows * k, QGEMV_GRAIN, omp_get_max_threads());
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t i0, i1;
        parlm_split(M, 1, omp_get_thread_num(), omp_get_num_threads(), &i0, &i1);
        for (int64_t i = i0; i < i1; i++)
            kt->q8_quantize(k, x + i * ldx, qx + i * nb);
#pragma omp barrier
        parlm_split(rows, 8, omp_get_thread_num(), omp_get_num_threads(), &i0, &i1);
        for (int64_t r0 = i0; r0 < i1; r0 += chunk) {
            int64_t r1 = r0 + chunk < i1 ? r0 + chunk : i1;
            const uint8_t *wc = (const uint8_t *)w + (uint64_t)r0 * ldw;
            for (int64_t i = 0; i < M; i++)
                (q8 ? kt->q8_0_gemv : kt->q4_0_gemv)(r1 - r0, k, wc, (int64_t)ldw, qx + i * nb,
                                                     1.0f, 0.0f, y + i * ldy + r0);
        }
    }
    free(qx);
    return PARLM_OK;
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

/* ---- the decode's layout, by measured speed ------------------------------------------ */

static pthread_once_t layout_once = PTHREAD_ONCE_INIT;
static parlm_qlayout layout[2] = {PARLM_QLAYOUT_R8, PARLM_QLAYOUT_R8}; /* Q8_0, Q4_0 */
static char layout_why[2][192];

static double thread_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Best-of-4 seconds of one GEMV over the whole matrix (CPU time of this thread) */
static double gemv_time(const parlm_kernels *kt, int q4, int repacked, int64_t rows, int64_t k,
                        const void *w, int64_t ldw, const parlm_q8x *qx, float *y)
{
    double best = 1e30;
    for (int r = 0; r < 4; r++) {
        double t0 = thread_seconds();
        if (repacked)
            (q4 ? kt->q4_0r_gemv : kt->q8_0r_gemv)(0, rows, k, w, qx, 1.0f, 0.0f, y);
        else
            (q4 ? kt->q4_0_gemv : kt->q8_0_gemv)(rows, k, w, ldw, qx, 1.0f, 0.0f, y);
        double t = thread_seconds() - t0;
        best = t < best ? t : best;
    }
    return best;
}

/* Times both layouts' GEMVs of type on a 3072 x 768 matrix of pseudo-random weights with
 * scale 1/16 (normal numbers: nothing slows either kernel), alternating three times. */
static void calibrate(int type, parlm_qlayout *out, char *why, size_t whylen)
{
    const int64_t rows = 3072, k = 768;
    const int q4 = type == PARLM_WT_Q4_0;
    const parlm_kernels *kt = parlm_kern();
    uint64_t ldw, rbytes;
    *out = PARLM_QLAYOUT_R8;
    if (parlm_wtype_bytes(type, (uint64_t)k, &ldw) || parlm_qrepack_bytes(type, rows, k, &rbytes)) {
        snprintf(why, whylen, "r8 (no calibration: %s)", parlm_last_error());
        return;
    }
    uint8_t *w = parlm_alloc((size_t)(rows * (int64_t)ldw), 1);
    uint8_t *wr = parlm_alloc((size_t)rbytes, 1);
    parlm_q8x *qx = malloc((size_t)(k / PARLM_QBLOCK) * sizeof *qx);
    float *x = malloc((size_t)k * sizeof *x), *y = malloc((size_t)rows * sizeof *y);
    if (!w || !wr || !qx || !x || !y) {
        snprintf(why, whylen, "r8 (no memory to calibrate)");
        goto done;
    }
    uint32_t s = 12345;
    for (uint64_t i = 0; i < (uint64_t)rows * ldw; i++) {
        s = s * 1664525u + 1013904223u;
        w[i] = (uint8_t)(s >> 24);
    }
    for (uint64_t i = 0; i < (uint64_t)rows * ldw; i += q4 ? 18 : 34)
        w[i] = 0x00, w[i + 1] = 0x2c; /* f16 1/16 */
    for (int64_t i = 0; i < k; i++)
        x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    kt->q8_quantize(k, x, qx);
    if (parlm_qrepack(type, rows, k, w, wr)) {
        snprintf(why, whylen, "r8 (no calibration: %s)", parlm_last_error());
        goto done;
    }
    double tp = 1e30, tr = 1e30;
    for (int round = 0; round < 3; round++) {
        double a = gemv_time(kt, q4, 0, rows, k, w, (int64_t)ldw, qx, y);
        double b = gemv_time(kt, q4, 1, rows, k, wr, (int64_t)ldw, qx, y);
        tp = a < tp ? a : tp;
        tr = b < tr ? b : tr;
    }
    *out = tp * 1.1 <= tr ? PARLM_QLAYOUT_ROWS : PARLM_QLAYOUT_R8;
    snprintf(why, whylen, "measured rows %.1f us, r8 %.1f us (%lldx%lld, one core)", tp * 1e6,
             tr * 1e6, (long long)rows, (long long)k);
done:
    parlm_free(w), parlm_free(wr), free(qx), free(x), free(y);
}

static void layout_init(void)
{
    const char *env = getenv("PARLM_QLAYOUT");
    int forced = -1;
    if (env && *env)
        forced = strcmp(env, "rows") == 0 ? PARLM_QLAYOUT_ROWS
               : strcmp(env, "r8") == 0   ? PARLM_QLAYOUT_R8
                                          : -2;
    for (int t = 0; t < 2; t++) {
        if (forced >= 0) {
            layout[t] = (parlm_qlayout)forced;
            snprintf(layout_why[t], sizeof layout_why[t], "forced by PARLM_QLAYOUT");
            continue;
        }
        char m[160];
        calibrate(t ? PARLM_WT_Q4_0 : PARLM_WT_Q8_0, &layout[t], m, sizeof m);
        snprintf(layout_why[t], sizeof layout_why[t], "%s%.160s",
                 forced == -2 ? "PARLM_QLAYOUT is not rows or r8: " : "", m);
    }
}

parlm_qlayout parlm_qlayout_current(int type, const char **why)
{
    if (type != PARLM_WT_Q8_0 && type != PARLM_WT_Q4_0) {
        if (why)
            *why = "not a quantized type";
        return PARLM_QLAYOUT_R8;
    }
    pthread_once(&layout_once, layout_init);
    int t = type == PARLM_WT_Q4_0;
    if (why)
        *why = layout_why[t];
    return layout[t];
}

const char *parlm_qlayout_name(parlm_qlayout l)
{
    return l == PARLM_QLAYOUT_ROWS ? "rows" : l == PARLM_QLAYOUT_R8 ? "r8" : "unknown";
}

parlm_status parlm_qlayout_select(int type, parlm_qlayout l)
{
    if (type != PARLM_WT_Q8_0 && type != PARLM_WT_Q4_0)
        return parlm_error(PARLM_EUNSUPPORTED, "parlm_qlayout_select: weight type %d is not q8_0 "
                           "or q4_0", type);
    if (l != PARLM_QLAYOUT_ROWS && l != PARLM_QLAYOUT_R8)
        return parlm_error(PARLM_EINVAL, "parlm_qlayout_select: %d is not a layout", (int)l);
    pthread_once(&layout_once, layout_init);
    int t = type == PARLM_WT_Q4_0;
    layout[t] = l;
    snprintf(layout_why[t], sizeof layout_why[t], "selected by the program");
    return PARLM_OK;
}
