/* simd/avx512/vec_q.h — the avx512 sets use the 256-bit x86 block dot (a block is 32
 * bytes: one ymm); built with -mavx512vnni it becomes vpdpbusd, in the library that
 * upgrades the avx512 table when cpuid reports AVX512_VNNI. */
#ifndef PARLM_SIMD_AVX512_VEC_Q_H
#define PARLM_SIMD_AVX512_VEC_Q_H
#include "../avx2/vec_q.h"

#ifdef __AVX512VNNI__
#define QV_NAME(x) parlm_avx512vnni_##x
#endif
#endif
