/* simd/common/gemv.c — the GEMVs of decode (y = alpha W x + beta y with f32 or bf16
 * weights, and y = alpha x B + beta y), written once over vec.h and compiled per ISA like
 * eltwise.c. Only the final lane sums and write-back (vf_gemv_out4/out1) are the ISA's:
 * the order of those adds is what makes a result bitwise the one it always was. */
#include "vec.h"

#include "../kernels.h"

void VEC_ISA_NAME(gemv_fill)(parlm_kernels *k);

/* VF_LANES weights from index p of a row as f32 (bf16 widened: exact), zero past n */
static inline vf wload(const void *row, int64_t p, int64_t n, int bf16)
{
    if (bf16)
        return n >= VF_LANES ? vf_load_bf16((const uint16_t *)row + p)
                             : vf_load_bf16_n((const uint16_t *)row + p, n);
    return n >= VF_LANES ? vf_load((const float *)row + p) : vf_load_n((const float *)row + p, n);
}

/* y[i] = alpha * dot(w[i, :k], x) + beta * y[i]: 4 rows at a time, 2 k vectors per step
 * (8 independent accumulators, 4 weight streams for the hardware prefetcher, helped by a
 * prefetch GEMV_AHEAD_ROWS below: decode weights come from memory in rows of a few KB).
 * The single-row tail sums in the same order, so a row's result does not depend on how
 * rows are grouped (or split over threads). bf16 is a constant at each caller. */
static inline __attribute__((always_inline)) void
gemv_t(int64_t rows, int64_t k, float alpha, const void *w, int64_t ldw, const float *x,
       float beta, float *y, int bf16)
{
    const int64_t L = VF_LANES, es = bf16 ? 2 : 4;
    int64_t i = 0;
    for (; i + 4 <= rows; i += 4) {
        const char *w0 = (const char *)w + i * ldw * es, *w1 = w0 + ldw * es;
        const char *w2 = w1 + ldw * es, *w3 = w2 + ldw * es;
        vf a0 = vf_zero(), a1 = a0, a2 = a0, a3 = a0;
        vf b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        int64_t p = 0;
        for (; p + 2 * L <= k; p += 2 * L) {
            for (int r = 0; r < 4; r++) { /* an address only: may point past the matrix */
                int64_t ahead = (GEMV_AHEAD_ROWS(es) + r) * ldw + p;
                uintptr_t a = (uintptr_t)w0 + (uintptr_t)(ahead * es);
                for (int64_t off = 0; off < 2 * L * es; off += 64)
                    v_prefetch_l1((const void *)(a + (uintptr_t)off));
            }
            vf x0 = vf_load(x + p), x1 = vf_load(x + p + L);
            a0 = vf_fma(wload(w0, p, L, bf16), x0, a0);
            a1 = vf_fma(wload(w1, p, L, bf16), x0, a1);
            a2 = vf_fma(wload(w2, p, L, bf16), x0, a2);
            a3 = vf_fma(wload(w3, p, L, bf16), x0, a3);
            b0 = vf_fma(wload(w0, p + L, L, bf16), x1, b0);
            b1 = vf_fma(wload(w1, p + L, L, bf16), x1, b1);
            b2 = vf_fma(wload(w2, p + L, L, bf16), x1, b2);
            b3 = vf_fma(wload(w3, p + L, L, bf16), x1, b3);
        }
        for (; p < k; p += L) {
            vf x0 = vf_load_n(x + p, k - p);
            a0 = vf_fma(wload(w0, p, k - p, bf16), x0, a0);
            a1 = vf_fma(wload(w1, p, k - p, bf16), x0, a1);
            a2 = vf_fma(wload(w2, p, k - p, bf16), x0, a2);
            a3 = vf_fma(wload(w3, p, k - p, bf16), x0, a3);
        }
        vf_gemv_out4(y + i, vf_add(a0, b0), vf_add(a1, b1), vf_add(a2, b2), vf_add(a3, b3),
                     alpha, beta);
    }
    for (; i < rows; i++) {
        const char *w0 = (const char *)w + i * ldw * es;
        vf a0 = vf_zero(), b0 = a0;
        int64_t p = 0;
        for (; p + 2 * L <= k; p += 2 * L) {
            a0 = vf_fma(wload(w0, p, L, bf16), vf_load(x + p), a0);
            b0 = vf_fma(wload(w0, p + L, L, bf16), vf_load(x + p + L), b0);
        }
        for (; p < k; p += L)
            a0 = vf_fma(wload(w0, p, k - p, bf16), vf_load_n(x + p, k - p), a0);
        vf_gemv_out1(y + i, vf_add(a0, b0), alpha, beta);
    }
}

/* The same y = alpha W x + beta y one row at a time: a single weight stream read front to
 * back (4 k vectors per step, 4 accumulators), prefetched GEMV_STREAM_AHEAD bytes ahead of
 * the load (past the row's end it is the next rows', as rows are stored back to back).
 * On Zen 5 this reads memory at 1.47x the four-row kernel's rate (56 vs 38 GB/s on 2
 * cores): several interleaved streams 2 KB apart keep fewer lines in flight there. Which
 * kernel runs is measured per CPU (parlm_gemv_mode, lib/core/dispatch.c). A row's sum
 * order does not depend on the rows around it. */
static inline __attribute__((always_inline)) void
gemv_t1(int64_t rows, int64_t k, float alpha, const void *w, int64_t ldw, const float *x,
        float beta, float *y, int bf16)
{
    const int64_t L = VF_LANES, es = bf16 ? 2 : 4;
    for (int64_t i = 0; i < rows; i++) {
        const char *w0 = (const char *)w + i * ldw * es;
        vf a0 = vf_zero(), a1 = a0, a2 = a0, a3 = a0;
        int64_t p = 0;
        for (; p + 4 * L <= k; p += 4 * L) {
            uintptr_t a = (uintptr_t)w0 + (uintptr_t)(p * es) + GEMV_STREAM_AHEAD;
            for (int64_t off = 0; off < 4 * L * es; off += 64) /* an address only */
                v_prefetch_l1((const void *)(a + (uintptr_t)off));
            a0 = vf_fma(wload(w0, p, L, bf16), vf_load(x + p), a0);
            a1 = vf_fma(wload(w0, p + L, L, bf16), vf_load(x + p + L), a1);
            a2 = vf_fma(wload(w0, p + 2 * L, L, bf16), vf_load(x + p + 2 * L), a2);
            a3 = vf_fma(wload(w0, p + 3 * L, L, bf16), vf_load(x + p + 3 * L), a3);
        }
        for (; p < k; p += L)
            a0 = vf_fma(wload(w0, p, k - p, bf16), vf_load_n(x + p, k - p), a0);
        vf_gemv_out1(y + i, vf_add(vf_add(a0, a1), vf_add(a2, a3)), alpha, beta);
    }
}

static void sgemv_t(int64_t rows, int64_t k, float alpha, const float *w, int64_t ldw,
                    const float *x, float beta, float *y)
{
    gemv_t(rows, k, alpha, w, ldw, x, beta, y, 0);
}

static void bgemv_t(int64_t rows, int64_t k, float alpha, const uint16_t *w, int64_t ldw,
                    const float *x, float beta, float *y)
{
    gemv_t(rows, k, alpha, w, ldw, x, beta, y, 1);
}

static void sgemv_t1(int64_t rows, int64_t k, float alpha, const float *w, int64_t ldw,
                     const float *x, float beta, float *y)
{
    gemv_t1(rows, k, alpha, w, ldw, x, beta, y, 0);
}

static void bgemv_t1(int64_t rows, int64_t k, float alpha, const uint16_t *w, int64_t ldw,
                     const float *x, float beta, float *y)
{
    gemv_t1(rows, k, alpha, w, ldw, x, beta, y, 1);
}

/* 8 vectors of columns (8 accumulators) per pass over the k rows of B; the last, partial
 * pass masks its loads and stores. */
static void sgemv_n(int64_t k, int64_t n, float alpha, const float *b, int64_t ldb,
                    const float *x, float beta, float *y)
{
    const int64_t L = VF_LANES;
    vf va = vf_set1(alpha), vb = vf_set1(beta);
    for (int64_t j0 = 0; j0 < n; j0 += 8 * L) {
        vf acc[8];
        for (int q = 0; q < 8; q++)
            acc[q] = vf_zero();
        if (n - j0 >= 8 * L) {
            for (int64_t p = 0; p < k; p++) {
                vf xp = vf_bcast(x + p);
                const float *row = b + p * ldb + j0;
#pragma GCC unroll 8
                for (int q = 0; q < 8; q++)
                    acc[q] = vf_fma(xp, vf_load(row + L * q), acc[q]);
            }
#pragma GCC unroll 8
            for (int q = 0; q < 8; q++) {
                vf r = vf_mul(va, acc[q]);
                if (beta != 0.0f)
                    r = vf_fma(vb, vf_load(y + j0 + L * q), r);
                vf_store(y + j0 + L * q, r);
            }
        } else {
            int nq = (int)((n - j0 + L - 1) / L); /* vectors with a column */
            for (int64_t p = 0; p < k; p++) {
                vf xp = vf_bcast(x + p);
                const float *row = b + p * ldb + j0;
                for (int q = 0; q < nq; q++)
                    acc[q] = vf_fma(xp, vf_load_n(row + L * q, n - j0 - L * q), acc[q]);
            }
            for (int q = 0; q < nq; q++) {
                vf r = vf_mul(va, acc[q]);
                if (beta != 0.0f)
                    r = vf_fma(vb, vf_load_n(y + j0 + L * q, n - j0 - L * q), r);
                vf_store_n(y + j0 + L * q, n - j0 - L * q, r);
            }
        }
    }
}

void VEC_ISA_NAME(gemv_fill)(parlm_kernels *k)
{
    k->sgemv_t = sgemv_t;
    k->sgemv_n = sgemv_n;
    k->bgemv_t = bgemv_t;
    k->sgemv_t1 = sgemv_t1;
    k->bgemv_t1 = bgemv_t1;
}
