/* lib/core/dispatch.c — CPU feature detection and the choice of kernel set.
 * x86-64: cpuid says what the core has, XGETBV says whether the OS saves the wider
 * registers (a CPU with AVX-512 under an OS that does not enable ZMM state must not
 * run AVX-512 code). aarch64: NEON (ASIMD) is architectural; HWCAP confirms it.
 * An int8 dot extension (AVX512-VNNI; AVX-VNNI; ASIMDDP) upgrades its set's quantized GEMV.
 * The bf16 GEMM path is chosen here too, by timing the two micro-kernels: an instruction's
 * presence says nothing of its speed (vdpbf16ps is 2x f32 FMA on Zen 4/5, 0.5x on some
 * Intel Xeons). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "dispatch.h"
#include "../../base/error.h"
#include "parlm/tensor.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#endif

typedef struct cpu_features {
    int avx2, avx512, avx512bf16, avx512vnni, avxvnni, neon, neondot;
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
    cpu_features f = {0, 0, 0, 0, 0, 0, 0};
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
    f.avx512vnni = f.avx512 && ((c >> 11) & 1);
    __cpuid_count(7, 1, a, b, c, d);
    f.avx512bf16 = f.avx512 && ((a >> 5) & 1);
#ifdef PARLM_BUILD_AVXVNNI
    f.avxvnni = f.avx2 && ((a >> 4) & 1);
#endif
#elif defined(__aarch64__)
    f.neon = (getauxval(AT_HWCAP) & HWCAP_ASIMD) != 0;
    f.neondot = f.neon && (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
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
    case PARLM_ISA_AVX2:
        parlm_kernels_avx2(k);
#ifdef PARLM_BUILD_AVXVNNI
        if (cpu.avxvnni)
            parlm_kernels_avxvnni(k);
#endif
        break;
    case PARLM_ISA_AVX512:
        parlm_kernels_avx512(k);
        if (cpu.avx512bf16)
            parlm_kernels_avx512bf16(k);
        if (cpu.avx512vnni)
            parlm_kernels_avx512vnni(k);
        break;
#endif
#if defined(__aarch64__)
    case PARLM_ISA_NEON:
        parlm_kernels_neon(k);
        if (cpu.neondot)
            parlm_kernels_neondot(k);
        break;
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

/* PARLM_BF16_PATH as read at init: -1 unset, else the path it forces. */
static int bf16_env = -1;
/* PARLM_GEMV as read at init: -1 unset, else the mode it forces. */
static int gemv_env = -1;

static void init_once(void)
{
    cpu = detect();
    const char *bp = getenv("PARLM_BF16_PATH");
    if (bp && *bp) {
        if (strcmp(bp, "dot") == 0)
            bf16_env = PARLM_BF16_DOT;
        else if (strcmp(bp, "widen") == 0)
            bf16_env = PARLM_BF16_WIDEN;
        else {
            init_status = PARLM_EINVAL;
            snprintf(init_msg, sizeof init_msg,
                     "PARLM_BF16_PATH='%s' is not a bf16 GEMM path (dot, widen)", bp);
        }
    }
    const char *gm = getenv("PARLM_GEMV");
    if (gm && *gm) {
        if (strcmp(gm, "rows4") == 0)
            gemv_env = PARLM_GEMV_ROWS4;
        else if (strcmp(gm, "row1") == 0)
            gemv_env = PARLM_GEMV_ROW1;
        else if (init_status == PARLM_OK) {
            init_status = PARLM_EINVAL;
            snprintf(init_msg, sizeof init_msg,
                     "PARLM_GEMV='%s' is not a GEMV loop order (rows4, row1)", gm);
        }
    }
    current = best();
    const char *env = getenv("PARLM_ISA");
    parlm_isa want;
    if (env && *env) {
        if (parlm_isa_parse(env, &want) != PARLM_OK) { /* reported before a bad path */
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

int parlm_cpu_has_int8dot(void)
{
    pthread_once(&once, init_once);
    return cpu.avx512vnni || cpu.neondot;
}

int parlm_cpu_has_avxvnni(void)
{
    pthread_once(&once, init_once);
    return cpu.avxvnni;
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

/* ---- bf16 GEMM path ----------------------------------------------------------------- */

static pthread_once_t bf16_once = PTHREAD_ONCE_INIT;
static parlm_bf16_path bf16_path = PARLM_BF16_WIDEN;
static char bf16_why[192];

static double thread_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Best-of-`reps` GFLOP/s of one micro-kernel on L1/L2-resident panels of depth 256.
 * CPU time of the calling thread: other processes on the core do not count. */
static double ukr_rate(const parlm_kernels *k, int pairs, void *a, void *b, float *c, int reps)
{
    const int kc = 256, calls = 256;
    int mr = pairs ? k->bgemm_mr : k->sgemm_mr, nr = pairs ? k->bgemm_nr : k->sgemm_nr;
    double best = 0.0;
    for (int r = 0; r < reps; r++) {
        double t0 = thread_seconds();
        for (int i = 0; i < calls; i++)
            if (pairs)
                k->bgemm_ukr(kc / 2, a, b, c, nr, 1.0f, 1.0f, mr, nr);
            else
                k->sgemm_ukr(kc, a, b, c, nr, 1.0f, 1.0f, mr, nr);
        double t = thread_seconds() - t0;
        double rate = t > 0 ? 2.0 * mr * nr * kc * calls / t * 1e-9 : 0.0;
        best = rate > best ? rate : best;
    }
    return best;
}

parlm_status parlm_bf16_calibrate(const parlm_kernels *k, double *dot_gflops,
                                  double *f32_gflops)
{
    int mr = k->sgemm_mr > k->bgemm_mr ? k->sgemm_mr : k->bgemm_mr;
    int nr = k->sgemm_nr > k->bgemm_nr ? k->sgemm_nr : k->bgemm_nr;
    /* panels of depth 256 in 32-bit words: bf16 pairs of 512 k fit the same bytes, but the
     * kernels run 128 pairs (256 k), so both do the same FLOPs per call */
    size_t abytes = (size_t)mr * 256 * 4, bbytes = (size_t)nr * 256 * 4;
    void *a = parlm_alloc(abytes, 1), *b = parlm_alloc(bbytes, 1);
    float *c = parlm_alloc((size_t)mr * (size_t)nr, 4);
    if (!a || !b || !c) {
        parlm_free(a), parlm_free(b), parlm_free(c);
        return parlm_error(PARLM_ENOMEM, "parlm_bf16_calibrate: out of memory");
    }
    /* bytes 0x3c: bf16 0x3c3c and f32 0x3c3c3c3c, both about 0.0115 (normal values: no
     * denormals or overflow to slow either kernel) */
    memset(a, 0x3c, abytes);
    memset(b, 0x3c, bbytes);
    memset(c, 0, (size_t)mr * (size_t)nr * 4);
    double dot = 0.0, f32 = 0.0;
    for (int round = 0; round < 3; round++) { /* alternate: both see the same conditions */
        double d = ukr_rate(k, 1, a, b, c, 2), f = ukr_rate(k, 0, a, b, c, 2);
        dot = d > dot ? d : dot;
        f32 = f > f32 ? f : f32;
    }
    parlm_free(a), parlm_free(b), parlm_free(c);
    *dot_gflops = dot;
    *f32_gflops = f32;
    return PARLM_OK;
}

static void bf16_init(void)
{
    pthread_once(&once, init_once);
    if (bf16_env >= 0) {
        bf16_path = (parlm_bf16_path)bf16_env;
        snprintf(bf16_why, sizeof bf16_why, "forced by PARLM_BF16_PATH");
        return;
    }
    double dot = 0.0, f32 = 0.0;
    if (parlm_bf16_calibrate(&table, &dot, &f32) != PARLM_OK) {
        bf16_path = PARLM_BF16_WIDEN;
        snprintf(bf16_why, sizeof bf16_why, "no memory to calibrate: widen (f32 speed)");
        return;
    }
    bf16_path = dot >= 1.15 * f32 ? PARLM_BF16_DOT : PARLM_BF16_WIDEN;
    snprintf(bf16_why, sizeof bf16_why,
             "measured bf16 dot kernel (%s) %.0f vs f32 kernel %.0f GFLOP/s on one core",
             table.bgemm_dot ? table.bgemm_dot : "widening in registers", dot, f32);
}

parlm_bf16_path parlm_bf16_path_current(const char **why)
{
    pthread_once(&bf16_once, bf16_init);
    if (why)
        *why = bf16_why;
    return bf16_path;
}

const char *parlm_bf16_path_name(parlm_bf16_path path)
{
    return path == PARLM_BF16_DOT ? "dot" : path == PARLM_BF16_WIDEN ? "widen" : "unknown";
}

parlm_status parlm_bf16_path_select(parlm_bf16_path path)
{
    if (path != PARLM_BF16_DOT && path != PARLM_BF16_WIDEN)
        return parlm_error(PARLM_EINVAL, "parlm_bf16_path_select: %d is not a bf16 path",
                           (int)path);
    pthread_once(&bf16_once, bf16_init);
    bf16_path = path;
    snprintf(bf16_why, sizeof bf16_why, "selected by the program");
    return PARLM_OK;
}

/* ---- the GEMV loop order (parlm_gemv_mode) ------------------------------------------- */

static pthread_once_t gemv_once = PTHREAD_ONCE_INIT;
static parlm_gemv_mode gemv_mode = PARLM_GEMV_ROWS4;
static char gemv_why[192];

/* GB/s of one pass of k's bgemv_t (row1 = 0) or bgemv_t1 over rows x 1024 bf16 weights,
 * on the calling thread's CPU time */
static double gemv_rate(const parlm_kernels *k, int row1, const uint16_t *w, int64_t rows,
                        const float *x, float *y)
{
    double t = thread_seconds();
    (row1 ? k->bgemv_t1 : k->bgemv_t)(rows, 1024, 1.0f, w, 1024, x, 0.0f, y);
    t = thread_seconds() - t;
    return t > 0 ? (double)rows * 1024 * 2 / t * 1e-9 : 0.0;
}

static void gemv_init(void)
{
    pthread_once(&once, init_once);
    if (gemv_env >= 0) {
        gemv_mode = (parlm_gemv_mode)gemv_env;
        snprintf(gemv_why, sizeof gemv_why, "forced by PARLM_GEMV");
        return;
    }
    const int64_t rows = 32768; /* x 1024 bf16: 64 MiB */
    uint16_t *w = parlm_alloc((size_t)rows * 1024, 2);
    float *x = parlm_alloc(1024, sizeof(float)), *y = parlm_alloc((size_t)rows, sizeof(float));
    if (!w || !x || !y) {
        parlm_free(w), parlm_free(x), parlm_free(y);
        snprintf(gemv_why, sizeof gemv_why, "no memory to calibrate: rows4");
        return;
    }
    for (int64_t i = 0; i < rows * 1024; i++)
        w[i] = (uint16_t)(0x3c00 + (i & 255)); /* finite bf16 values */
    for (int i = 0; i < 1024; i++)
        x[i] = 1.0f / (float)(1 + i % 7);
    double r4 = 0.0, r1 = 0.0;
    for (int round = 0; round < 3; round++) { /* alternate: both see the same conditions */
        double a = gemv_rate(&table, 0, w, rows, x, y), b = gemv_rate(&table, 1, w, rows, x, y);
        r4 = a > r4 ? a : r4;
        r1 = b > r1 ? b : r1;
    }
    parlm_free(w), parlm_free(x), parlm_free(y);
    gemv_mode = r1 >= 1.05 * r4 ? PARLM_GEMV_ROW1 : PARLM_GEMV_ROWS4;
    snprintf(gemv_why, sizeof gemv_why,
             "measured bf16 GEMV from memory: one row at a time %.1f vs four rows %.1f GB/s "
             "on one core", r1, r4);
}

parlm_gemv_mode parlm_gemv_mode_current(const char **why)
{
    pthread_once(&gemv_once, gemv_init);
    if (why)
        *why = gemv_why;
    return gemv_mode;
}

const char *parlm_gemv_mode_name(parlm_gemv_mode mode)
{
    return mode == PARLM_GEMV_ROWS4 ? "rows4" : mode == PARLM_GEMV_ROW1 ? "row1" : "unknown";
}

parlm_status parlm_gemv_mode_select(parlm_gemv_mode mode)
{
    if (mode != PARLM_GEMV_ROWS4 && mode != PARLM_GEMV_ROW1)
        return parlm_error(PARLM_EINVAL, "parlm_gemv_mode_select: %d is not a GEMV loop order",
                           (int)mode);
    pthread_once(&gemv_once, gemv_init);
    gemv_mode = mode;
    snprintf(gemv_why, sizeof gemv_why, "selected by the program");
    return PARLM_OK;
}
