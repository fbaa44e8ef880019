/* PLACEHOLDER — replaced before commit. */
typedef int parlm_placeholder_ops_lib;
