/* lib/dispatch.c — CPU feature detection and the choice of kernel set.
 * x86-64: cpuid says what the core has, XGETBV says whether the OS saves the wider
 * registers (a CPU with AVX-512 under an OS that does not enable ZMM state must not
 * run AVX-512 code). aarch64: NEON (ASIMD) is architectural; HWCAP confirms it. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "error.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#endif

typedef struct cpu_features {
    int avx2, avx512, avx512bf16, neon;
} cpu_features;

#if defined(__x86_64__)
static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

static cpu_features detect(void)
{
    cpu_features f = {0, 0, 0, 0};
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return f;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx)
        return f;
    uint64_t xcr0 = xgetbv0();
    int ymm_ok = (xcr0 & 0x6) == 0x6;    /* SSE + AVX state */
    int zmm_ok = (xcr0 & 0xe6) == 0xe6;  /* + opmask, ZMM_Hi256, Hi16_ZMM */
    if (__get_cpuid_max(0, NULL) < 7)
        return f;
    __cpuid_count(7, 0, a, b, c, d);
    int avx2 = (b >> 5) & 1;
    int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1;
    int avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    f.avx2 = avx2 && fma && ymm_ok;
    f.avx512 = f.avx2 && avx512f && avx512dq && avx512bw && avx512vl && zmm_ok;
    __cpuid_count(7, 1, a, b, c, d);
    f.avx512bf16 = f.avx512 && ((a >> 5) & 1);
#elif defined(__aarch64__)
    f.neon = (getauxval(AT_HWCAP) & HWCAP_ASIMD) != 0;
#endif
    return f;
}

static cpu_features cpu;
static parlm_kernels table;
static parlm_isa current = PARLM_ISA_SCALAR;
static parlm_status init_status = PARLM_OK;
static char init_msg[256];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static const char *const names[PARLM_ISA_COUNT] = {"scalar", "avx2", "avx512", "neon"};

const char *parlm_isa_name(parlm_isa isa)
{
    return (unsigned)isa < PARLM_ISA_COUNT ? names[isa] : "unknown";
}

parlm_status parlm_isa_parse(const char *name, parlm_isa *out)
{
    if (!name || !out)
        return parlm_error(PARLM_EINVAL, "parlm_isa_parse: null argument");
    for (int i = 0; i < PARLM_ISA_COUNT; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (parlm_isa)i;
            return PARLM_OK;
        }
    return parlm_error(PARLM_EINVAL, "unknown ISA '%s' (expected scalar, avx2, avx512 or neon)",
                       name);
}

static int supported(parlm_isa isa)
{
    switch (isa) {
    case PARLM_ISA_SCALAR: return 1;
#if defined(__x86_64__)
    case PARLM_ISA_AVX2: return cpu.avx2;
    case PARLM_ISA_AVX512: return cpu.avx512;
#endif
#if defined(__aarch64__)
    case PARLM_ISA_NEON: return cpu.neon;
#endif
    default: return 0;
    }
}

static void fill(parlm_isa isa, parlm_kernels *k)
{
    switch (isa) {
#if defined(__x86_64__)
    case PARLM_ISA_AVX2: parlm_kernels_avx2(k); break;
    case PARLM_ISA_AVX512:
        parlm_kernels_avx512(k);
        if (cpu.avx512bf16)
            parlm_kernels_avx512bf16(k);
        break;
#endif
#if defined(__aarch64__)
    case PARLM_ISA_NEON: parlm_kernels_neon(k); break;
#endif
    default: parlm_kernels_scalar(k); break;
    }
}

static parlm_isa best(void)
{
    for (int i = PARLM_ISA_COUNT - 1; i > 0; i--)
        if (supported((parlm_isa)i))
            return (parlm_isa)i;
    return PARLM_ISA_SCALAR;
}

static void init_once(void)
{
    cpu = detect();
    current = best();
    const char *env = getenv("PARLM_ISA");
    parlm_isa want;
    if (env && *env) {
        if (parlm_isa_parse(env, &want) != PARLM_OK) {
            init_status = PARLM_EINVAL;
            snprintf(init_msg, sizeof init_msg,
                     "PARLM_ISA='%s' is not a kernel set (scalar, avx2, avx512, neon)", env);
        } else if (!supported(want)) {
            init_status = PARLM_EUNSUPPORTED;
            snprintf(init_msg, sizeof init_msg,
                     "PARLM_ISA=%s: this CPU or build cannot run the %s kernels", env, env);
        } else {
            current = want;
        }
    }
    fill(current, &table);
}

parlm_isa parlm_isa_current(void)
{
    pthread_once(&once, init_once);
    return current;
}

parlm_status parlm_isa_init(void)
{
    pthread_once(&once, init_once);
    if (init_status != PARLM_OK)
        return parlm_error(init_status, "%s", init_msg);
    return PARLM_OK;
}

int parlm_isa_supported(parlm_isa isa)
{
    pthread_once(&once, init_once);
    return (unsigned)isa < PARLM_ISA_COUNT && supported(isa);
}

int parlm_cpu_has_avx512bf16(void)
{
    pthread_once(&once, init_once);
    return cpu.avx512bf16;
}

parlm_status parlm_kernels_for(parlm_isa isa, parlm_kernels *k)
{
    pthread_once(&once, init_once);
    if ((unsigned)isa >= PARLM_ISA_COUNT)
        return parlm_error(PARLM_EINVAL, "ISA %d out of range", (int)isa);
    if (!supported(isa))
        return parlm_error(PARLM_EUNSUPPORTED,
                           "ISA '%s' is not supported by this CPU or this build",
                           parlm_isa_name(isa));
    fill(isa, k);
    return PARLM_OK;
}

parlm_status parlm_isa_select(parlm_isa isa)
{
    parlm_kernels k;
    parlm_status st = parlm_kernels_for(isa, &k);
    if (st != PARLM_OK)
        return st;
    table = k;
    current = isa;
    return PARLM_OK;
}

const parlm_kernels *parlm_kern(void)
{
    pthread_once(&once, init_once);
    return &table;
}
