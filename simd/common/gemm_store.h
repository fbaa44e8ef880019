/* simd/common/gemm_store.h — the write-back of a GEMM micro-kernel's tile,
 * C = alpha * acc + beta * C (beta == 0 never reads C), and its prefetch, written once over
 * vec.h for the f32 and bf16 micro-kernels of every ISA (include after that ISA's vec.h).
 * Edge tiles go through vec.h's tail loads/stores: no scalar loop, columns >= n untouched. */

/* The C tile is touched only after the k loop: ask for its lines now (the first and last
 * of each of its m rows, ncols wide), so they arrive while the FMAs run (a strided tile is
 * invisible to the hardware prefetcher). Always inlined: as a function of its own, GCC
 * finds it free of side effects and drops the calls. */
static inline __attribute__((always_inline)) void gemm_prefetch_tile(const float *c, int64_t ldc,
                                                                      int m, int ncols)
{
    for (int i = 0; i < m; i++) {
        v_prefetch_l2(c + i * ldc);
        v_prefetch_l2(c + i * ldc + ncols - 1);
    }
}

/* Rows i < m of a tile of mr rows x nv vectors: acc[i * nvmax + v] holds
 * C[i, VF_LANES v : VF_LANES (v + 1)]. mr, nv, nvmax are constants after inlining, so acc
 * stays in registers. full (n == nv * VF_LANES): plain loads and stores. */
static inline __attribute__((always_inline)) void
gemm_store_rows(const vf *acc, const int mr, const int nvmax, const int nv, float *c,
                int64_t ldc, float alpha, float beta, int m, int n, const int full)
{
    const int64_t L = VF_LANES;
    vf va = vf_set1(alpha), vb = vf_set1(beta);
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) {
        if (i >= m)
            break;
        float *ci = c + i * ldc;
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) {
            vf r = vf_mul(va, acc[i * nvmax + v]);
            if (beta != 0.0f)
                r = vf_fma(vb, full ? vf_load(ci + L * v) : vf_load_n(ci + L * v, n - L * v), r);
            if (full)
                vf_store(ci + L * v, r);
            else
                vf_store_n(ci + L * v, n - L * v, r);
        }
    }
}

/* The tile write-back: whole rows without tails unless tail masks cost nothing on this ISA
 * (VF_TAIL_FREE: one path for all). */
static inline __attribute__((always_inline)) void
gemm_store_tile(const vf *acc, const int mr, const int nvmax, const int nv, float *c, int64_t ldc,
                float alpha, float beta, int m, int n)
{
    if (!VF_TAIL_FREE && n == nv * VF_LANES)
        gemm_store_rows(acc, mr, nvmax, nv, c, ldc, alpha, beta, m, n, 1);
    else
        gemm_store_rows(acc, mr, nvmax, nv, c, ldc, alpha, beta, m, n, 0);
}
