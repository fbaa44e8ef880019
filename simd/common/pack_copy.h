/* simd/common/pack_copy.h — the GEMM copy packers (rs == 1: a panel's step k is contiguous
 * in the source), written once over vec.h and included by each simd/<isa>/gemm.c after
 * vec.h and pack.h. They read 8 block rows (4 k pairs) at a time, each in order across all
 * panels; tails go through vec.h's tail loads/stores. The transposes stay per ISA. */

/* PACK_COPY_AHEAD: prefetch the source row that many rows below (0: none); an ISA whose
 * panels are long rows far apart (each its own short stream) sets it before including. */
#ifndef PACK_COPY_AHEAD
#define PACK_COPY_AHEAD 0
#endif

/* f32: out[q*ps + k*w + i] = x[k*cs + q*w + i], rows q*w + i >= mn zero */
static inline void pack_copy_f32(int64_t kc, int64_t mn, const float *x, int64_t cs, int w,
                                 float *out)
{
    const int64_t L = VF_LANES;
    int64_t ps = pack_panel_stride(kc, w), np = (mn + w - 1) / w;
    for (int64_t k0 = 0; k0 < kc; k0 += 8) {
        int64_t kn = kc - k0 < 8 ? kc - k0 : 8;
        for (int64_t q = 0; q < np; q++) {
            const float *src = x + q * w;
            float *dst = out + q * ps;
            if (w % L == 0 && (q + 1) * w <= mn) /* a whole panel: no tails */
                for (int64_t k = k0; k < k0 + kn; k++) {
                    if (PACK_COPY_AHEAD) { /* an address only: may point past the block */
                        uintptr_t ahead = (uintptr_t)(src + k * cs) +
                                          (uintptr_t)(PACK_COPY_AHEAD * cs * 4);
                        for (int i = 0; i < w; i += 16)
                            v_prefetch_l1((const void *)(ahead + (uintptr_t)(4 * i)));
                        v_prefetch_l1((const void *)(ahead + (uintptr_t)(4 * w - 4)));
                    }
                    for (int i = 0; i < w; i += L)
                        vf_store(dst + k * w + i, vf_load(src + k * cs + i));
                }
            else
                for (int64_t k = k0; k < k0 + kn; k++)
                    for (int i = 0; i < w; i += L)
                        vf_store_n(dst + k * w + i, w - i,
                                   vf_load_n(src + k * cs + i, mn - q * w - i));
        }
    }
}

/* bf16 k pairs: block rows 2p and 2p+1 interleaved into 32-bit words,
 * out[2*q*ps + (p*w + i)*2 + e] = x[(2p+e)*cs + q*w + i], zero past mn rows / kc */
static inline void pack_copy_bf16(int64_t kc, int64_t mn, const uint16_t *x, int64_t cs, int w,
                                  uint16_t *out)
{
    const int64_t L = VF_LANES;
    int64_t kc2 = (kc + 1) / 2, ps = pack_panel_stride(kc2, w), np = (mn + w - 1) / w;
    for (int64_t p0 = 0; p0 < kc2; p0 += 4) {
        int64_t pn = kc2 - p0 < 4 ? kc2 - p0 : 4;
        for (int64_t q = 0; q < np; q++)
            for (int64_t p = p0; p < p0 + pn; p++) {
                const uint16_t *r0 = x + 2 * p * cs + q * w;
                int odd = 2 * p + 1 < kc;
                for (int i = 0; i < w; i += L) {
                    vf v = vf_bf16_zip_n(r0 + i, odd ? r0 + cs + i : NULL, mn - q * w - i);
                    vf_store_n((float *)(out + 2 * q * ps + (p * w + i) * 2), w - i, v);
                }
            }
    }
}
