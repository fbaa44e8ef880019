/* tests/testutil.h — small helpers shared by the Check suites: a seeded RNG (so a
 * failure reproduces), aligned buffers, and error measures for tolerance checks. */
#ifndef PARLM_TESTUTIL_H
#define PARLM_TESTUTIL_H
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parlm.h"

/* xorshift64*: deterministic, independent of libc's rand(). */
static inline uint64_t tu_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

/* uniform in [-1, 1) */
static inline float tu_uniform(uint64_t *s)
{
    return (float)((tu_next(s) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static inline void tu_fill(float *x, int64_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (int64_t i = 0; i < n; i++)
        x[i] = tu_uniform(&s);
}

/* 64-byte aligned, NaN-filled (so reading an output that should be write-only shows). */
static inline float *tu_alloc_nan(int64_t n)
{
    float *p = (float *)parlm_alloc((size_t)(n > 0 ? n : 1), sizeof(float));
    for (int64_t i = 0; i < n; i++)
        p[i] = NAN;
    return p;
}

static inline float tu_max_abs_diff(const float *a, const float *b, int64_t n)
{
    float m = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= m)) /* also catches NaN */
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

static inline float tu_max_abs(const float *a, int64_t n)
{
    float m = 0.0f;
    for (int64_t i = 0; i < n; i++)
        m = fabsf(a[i]) > m ? fabsf(a[i]) : m;
    return m;
}
/* A fresh directory "/tmp/<prefix>-XXXXXX" written into dir (len bytes): 0, or -1. */
static inline int tu_mkdtemp(char *dir, size_t len, const char *prefix)
{
    snprintf(dir, len, "/tmp/%s-XXXXXX", prefix);
    return mkdtemp(dir) ? 0 : -1;
}

/* Removes a tree made by tu_mkdtemp: system()'s status (0 on success). */
static inline int tu_rmtree(const char *dir)
{
    char cmd[320];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}
#endif
