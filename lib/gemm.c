/* PLACEHOLDER — replaced before commit. */
typedef int parlm_placeholder_gemm_lib;
