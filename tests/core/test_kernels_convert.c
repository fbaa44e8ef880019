/* tests/core/test_kernels_convert.c — simd/<isa>/convert.c: each kernel set's bf16 <-> f32
 * conversion kernels, bitwise against the scalar set: all 65536 bf16 values one way;
 * every special class and 2^20 random patterns the other, at lengths that exercise the
 * vector tails. The scalar kernels are themselves checked against to_bf16 (harness.h). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* All 65536 bf16 -> f32, bitwise against the scalar set (NaN payloads included). */
START_TEST(bf16_to_f32_exhaustive_every_set)
{
    kset sets[8];
    int ns = kernel_sets(sets, 8);
    uint16_t *h = parlm_alloc(65536, 2);
    float *a = parlm_alloc(65536, 4), *b = parlm_alloc(65536, 4);
    for (int i = 0; i < 65536; i++)
        h[i] = (uint16_t)i;
    parlm_kernels sc = table_of(PARLM_ISA_SCALAR);
    sc.bf16_to_f32(h, b, 65536);
    for (int i = 0; i < 65536; i++) /* the reference itself */
        if (bits_of(b[i]) != (uint32_t)i << 16)
            ck_abort_msg("scalar bf16_to_f32(%04x) = %08x", i, bits_of(b[i]));
    for (int s = 0; s < ns; s++) {
        memset(a, 0, 65536 * 4);
        sets[s].k.bf16_to_f32(h, a, 65536);
        ck_assert_msg(memcmp(a, b, 65536 * 4) == 0, "%s bf16_to_f32 differs", sets[s].name);
    }
    parlm_free(h);
    parlm_free(a);
    parlm_free(b);
}
END_TEST

/* f32 -> bf16: every special class (zeros, denormals, rounding ties, the largest finite
 * that rounds to inf, infinities, NaNs whose payload would carry into the exponent), then
 * 2^20 random bit patterns; bitwise against the scalar reference, at lengths that exercise
 * the vector tails. */
START_TEST(f32_to_bf16_specials_and_random_every_set)
{
    static const uint32_t specials[] = {
        0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x00007fff, 0x00008000, 0x00008001,
        0x00018000, 0x0000ffff, 0x00010000, 0x007fffff, 0x807fffff, 0x00400000, 0x00800000,
        0x3f800000, 0x3f808000, 0x3f818000, 0x3f807fff, 0x3f808001, 0xbf808000, 0x7f7fffff,
        0xff7fffff, 0x7f7f7fff, 0x7f7f8000, 0x7f800000, 0xff800000, 0x7f800001, 0xff800001,
        0x7f80ffff, 0x7fbfffff, 0x7fc00000, 0xffc00000, 0x7fffffff, 0xffffffff, 0x7fff8000};
    int nsp = (int)(sizeof specials / sizeof specials[0]);
    int64_t n = (1 << 20) + 13;
    float *x = parlm_alloc((size_t)n, 4);
    uint16_t *a = parlm_alloc((size_t)n + 8, 2), *b = parlm_alloc((size_t)n + 8, 2);
    for (int i = 0; i < nsp; i++)
        memcpy(&x[i], &specials[i], 4);
    uint64_t st = 99;
    for (int64_t i = nsp; i < n; i++) {
        uint32_t u = (uint32_t)(tu_next(&st) >> 32);
        memcpy(&x[i], &u, 4);
    }
    for (int64_t i = 0; i < n; i++) /* the reference against an independent statement of RNE */
        b[i] = to_bf16(x[i]);
    parlm_kernels sc = table_of(PARLM_ISA_SCALAR);
    sc.f32_to_bf16(x, a, n);
    ck_assert(memcmp(a, b, (size_t)n * 2) == 0);
    kset sets[8];
    int ns = kernel_sets(sets, 8);
    for (int s = 0; s < ns; s++) {
        for (int64_t len = 0; len <= 40; len++) { /* tails: write exactly len outputs */
            for (int64_t i = 0; i < len + 8; i++)
                a[i] = 0xdead;
            sets[s].k.f32_to_bf16(x, a, len);
            for (int64_t i = 0; i < len; i++)
                if (a[i] != b[i])
                    ck_abort_msg("%s: x=%08x -> %04x, expected %04x", sets[s].name,
                                 bits_of(x[i]), a[i], b[i]);
            for (int64_t i = len; i < len + 8; i++)
                if (a[i] != 0xdead)
                    ck_abort_msg("%s: f32_to_bf16 of %lld wrote y[%lld]", sets[s].name,
                                 (long long)len, (long long)i);
        }
        sets[s].k.f32_to_bf16(x, a, n);
        for (int64_t i = 0; i < n; i++)
            if (a[i] != b[i])
                ck_abort_msg("%s: x=%08x -> %04x, expected %04x", sets[s].name, bits_of(x[i]),
                             a[i], b[i]);
    }
    parlm_free(x);
    parlm_free(a);
    parlm_free(b);
}
END_TEST
static Suite *kernels_convert_suite(void)
{
    Suite *s = suite_create("convert kernels");
    TCase *tc = tcase_create("conversions");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, bf16_to_f32_exhaustive_every_set);
    tcase_add_test(tc, f32_to_bf16_specials_and_random_every_set);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return run_suite(kernels_convert_suite()); }
