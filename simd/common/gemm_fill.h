/* simd/common/gemm_fill.h — fills a kernel table's GEMM entries, the same for every ISA;
 * included by each simd/<isa>/gemm.c after its kernels, which must be named as below
 * (MR, SNR: the f32 tile; MR, NR: the bf16 k-pair tile; GEMM_WPACK: wpack or NULL, in which
 * case lib/core/gemm.c composes it from bf16_to_f32 and spack; GEMM_UKR_UA: the f32 tile on
 * A in place, or undefined). The GEMVs come from
 * simd/common/gemv.c (its gemv_fill). */

#ifndef GEMM_UKR_UA
#define GEMM_UKR_UA NULL /* this set packs A for every product */
#endif

static inline void gemm_fill(parlm_kernels *k)
{
    k->sgemm_mr = MR;
    k->sgemm_nr = SNR;
    k->sgemm_ukr = sgemm_ukr;
    k->sgemm_ukr_ua = GEMM_UKR_UA;
    k->bgemm_mr = MR;
    k->bgemm_nr = NR;
    k->bgemm_ukr = bgemm_ukr;
    k->spack = spack;
    k->bpack = bpack;
    k->wpack = GEMM_WPACK;
}
