/* parlm/isa.h — which SIMD kernel set runs. Chosen once, at first use, as the best
 * set the CPU supports (cpuid + XGETBV on x86-64, HWCAP on aarch64), unless the
 * environment variable PARLM_ISA=scalar|avx2|avx512|neon forces one. */
#ifndef PARLM_ISA_H
#define PARLM_ISA_H
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum parlm_isa {
    PARLM_ISA_SCALAR = 0,
    PARLM_ISA_AVX2 = 1,   /* AVX2 + FMA */
    PARLM_ISA_AVX512 = 2, /* AVX-512 F/BW/VL/DQ (+ BF16 kernels when the CPU has AVX512-BF16) */
    PARLM_ISA_NEON = 3,   /* aarch64 Advanced SIMD */
    PARLM_ISA_COUNT
} parlm_isa;

/* "scalar", "avx2", "avx512", "neon". */
PARLM_API const char *parlm_isa_name(parlm_isa isa);

/* Parses a name as above; PARLM_EINVAL for an unknown name. */
PARLM_API parlm_status parlm_isa_parse(const char *name, parlm_isa *out);

/* 1 if this build has the set and this CPU (and OS) can run it, else 0. */
PARLM_API int parlm_isa_supported(parlm_isa isa);

/* 1 if the CPU has AVX512-BF16 and the build has its kernels (dot-product bf16 GEMM). */
PARLM_API int parlm_cpu_has_avx512bf16(void);

/* 1 if the CPU has an int8 dot-product extension that upgrades the quantized GEMV of its
 * kernel set (x86: AVX512-VNNI on the avx512 set; aarch64: ASIMDDP on the neon set). */
PARLM_API int parlm_cpu_has_int8dot(void);

/* 1 if the CPU has AVX-VNNI (the VEX vpdpbusd) and the build has its kernels: it upgrades
 * the avx2 set's quantized GEMV. */
PARLM_API int parlm_cpu_has_avxvnni(void);

/* Kernel set in use. The first call settles the choice (reading PARLM_ISA). If
 * PARLM_ISA names a set this CPU cannot run, parlm_isa_init() reports it and the
 * library keeps to the best supported set. */
PARLM_API parlm_isa parlm_isa_current(void);

/* Settles the choice now: PARLM_EINVAL / PARLM_EUNSUPPORTED if PARLM_ISA is set to an
 * unknown or unsupported set (the error message names it). Programs call this first. */
PARLM_API parlm_status parlm_isa_init(void);

/* Switches kernel sets (for tests and benchmarks; not thread-safe against running ops).
 * PARLM_EUNSUPPORTED if the CPU or build lacks the set. */
PARLM_API parlm_status parlm_isa_select(parlm_isa isa);

/* How parlm_gemm_bf16 computes, chosen per CPU by measured speed:
 *   DOT:   bf16 k pairs packed as they are, multiplied by the set's bf16 kernel (vdpbf16ps
 *          with AVX512-BF16; other sets widen each pair in registers, 2 FMAs per pair);
 *   WIDEN: bf16 widened to f32 while packing (exact), then the f32 micro-kernel: the
 *          memory stays bf16, the arithmetic runs at f32 peak.
 * The choice is made once, at the first call that needs it: PARLM_BF16_PATH=dot|widen in
 * the environment forces one (parlm_isa_init() reports any other value); otherwise a
 * short calibration (a few ms) times both micro-kernels on one core and takes dot only
 * when it is clearly (>= 1.15x) faster, e.g. on Zen 4/5 (2x), not on Intel cores where
 * vdpbf16ps retires at half the f32 FMA rate, nor where there is no dot instruction. A
 * clear margin keeps the choice, and so the result bits, the same from run to run. */
typedef enum parlm_bf16_path { PARLM_BF16_DOT = 0, PARLM_BF16_WIDEN = 1 } parlm_bf16_path;

/* The path in use; *why (if not NULL) gets a one-line reason with the measured rates. */
PARLM_API parlm_bf16_path parlm_bf16_path_current(const char **why);

/* "dot" or "widen". */
PARLM_API const char *parlm_bf16_path_name(parlm_bf16_path path);

/* Forces a path (tests and benchmarks; not thread-safe against running GEMMs). */
PARLM_API parlm_status parlm_bf16_path_select(parlm_bf16_path path);

/* The loop order of the decode GEMVs (y = W x, f32 and bf16 weights), chosen per CPU by
 * measured speed: ROWS4 takes four rows at once (each x load serves four rows, four
 * interleaved weight streams), ROW1 one row at a time (one weight stream, prefetched
 * ahead). Which reads memory faster depends on the CPU's prefetchers (Zen 5: ROW1 1.47x).
 * Chosen once, at the first call that needs it: PARLM_GEMV=rows4|row1 forces one, else a
 * short calibration (~20 ms) times both bf16 kernels on one core over a 64 MiB matrix
 * (larger than most last-level caches), 3 alternating rounds, and takes ROW1 only when it
 * is >= 1.05x faster. The two differ only in the order of a row's sums (last bits). */
typedef enum parlm_gemv_mode { PARLM_GEMV_ROWS4 = 0, PARLM_GEMV_ROW1 = 1 } parlm_gemv_mode;

/* The mode in use; *why (if not NULL) gets a one-line reason with the measured rates. */
PARLM_API parlm_gemv_mode parlm_gemv_mode_current(const char **why);

/* "rows4" or "row1". */
PARLM_API const char *parlm_gemv_mode_name(parlm_gemv_mode mode);

/* Forces a mode (tests and benchmarks; not thread-safe against running GEMVs). */
PARLM_API parlm_status parlm_gemv_mode_select(parlm_gemv_mode mode);

#ifdef __cplusplus
}
#endif
#endif
