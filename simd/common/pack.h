/* simd/common/pack.h — the GEMM packing code that is the same on every ISA, included by
 * each simd/<isa>/gemm.c (static functions, compiled once per ISA with that ISA's flags).
 * Layout (simd/kernels.h): panel q of width w starts at q * pack_panel_stride() words;
 * rows past mn and (bf16) a k pair's missing partner are zero. The vector copy and
 * transpose paths stay per ISA; this is the stride and the plain loops behind them. */
#include <stdint.h>
#include <string.h>

/* words of one panel: steps * w rounded up to 16 (64 bytes) */
static inline int64_t pack_panel_stride(int64_t steps, int w)
{
    return (steps * w + 15) / 16 * 16;
}

/* f32 panels by plain loops, for layouts the vector code does not take (neither stride
 * 1, or a width it has no path for): out[q*ps + k*w + i] = x[(q*w + i)*rs + k*cs].
 * bf16: x holds bf16, widened exactly (a bf16 is the top half of an f32). */
static inline void pack_plain_f32(int64_t kc, int64_t mn, const void *x, int bf16, int64_t rs,
                                  int64_t cs, int w, float *out)
{
    int64_t ps = pack_panel_stride(kc, w), np = (mn + w - 1) / w;
    for (int64_t q = 0; q < np; q++)
        for (int64_t k = 0; k < kc; k++)
            for (int i = 0; i < w; i++) {
                int64_t r = q * w + i, at = r * rs + k * cs;
                float v = 0.0f;
                if (r < mn && bf16) {
                    uint32_t u = (uint32_t)((const uint16_t *)x)[at] << 16;
                    memcpy(&v, &u, 4);
                } else if (r < mn) {
                    v = ((const float *)x)[at];
                }
                out[q * ps + k * w + i] = v;
            }
}

/* bf16 k-pair panels by plain loops:
 * out[2*q*ps + (p*w + i)*2 + e] = x[(q*w + i)*rs + (2p+e)*cs], zero past mn rows / kc. */
static inline void pack_plain_bf16(int64_t kc, int64_t mn, const uint16_t *x, int64_t rs,
                                   int64_t cs, int w, uint16_t *out)
{
    int64_t kc2 = (kc + 1) / 2, ps = pack_panel_stride(kc2, w), np = (mn + w - 1) / w;
    for (int64_t q = 0; q < np; q++)
        for (int64_t p = 0; p < kc2; p++)
            for (int i = 0; i < w; i++)
                for (int e = 0; e < 2; e++) {
                    int64_t r = q * w + i, k = 2 * p + e;
                    out[2 * q * ps + (p * w + i) * 2 + e] = r < mn && k < kc ? x[r * rs + k * cs] : 0;
                }
}
