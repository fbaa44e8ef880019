/* simd/common/gemm_bf16.h — the bf16 k-pair micro-kernel that widens in registers, written
 * once over vec.h for the ISAs whose tile is MR rows x two vectors (avx2, avx512; include
 * after vec.h, gemm_store.h, MR and NR = 2 * VF_LANES). A bf16 is the top half of an f32, so
 * widening is exact: each k pair is two f32 FMAs per accumulator, even element first. */

static void bgemm_ukr(int64_t kc2, const uint16_t *ap, const uint16_t *bp, float *c,
                      int64_t ldc, float alpha, float beta, int m, int n)
{
    vf acc[MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
        acc[i][0] = acc[i][1] = vf_zero();
    gemm_prefetch_tile(c, ldc, m, NR);
    for (int64_t p = 0; p < kc2; p++) {
        vi w0 = vi_load((const int32_t *)bp), w1 = vi_load((const int32_t *)(bp + 2 * VF_LANES));
        vf be0 = vf_bf16_even(w0), bo0 = vf_bf16_odd(w0);
        vf be1 = vf_bf16_even(w1), bo1 = vf_bf16_odd(w1);
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            int32_t pair;
            memcpy(&pair, ap + 2 * i, 4);
            vi a = vi_set1(pair);
            vf ae = vf_bf16_even(a), ao = vf_bf16_odd(a);
            acc[i][0] = vf_fma(ae, be0, acc[i][0]);
            acc[i][1] = vf_fma(ae, be1, acc[i][1]);
            acc[i][0] = vf_fma(ao, bo0, acc[i][0]);
            acc[i][1] = vf_fma(ao, bo1, acc[i][1]);
        }
        ap += 2 * MR;
        bp += 2 * NR;
    }
    gemm_store_tile(&acc[0][0], MR, 2, 2, c, ldc, alpha, beta, m, n);
}
