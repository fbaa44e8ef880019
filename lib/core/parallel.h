/* lib/core/parallel.h — internal: how lib/ splits a range of work over OpenMP threads.
 * Static, contiguous slices (rounded to a multiple of `align` items) keep the result
 * independent of scheduling, so a run with the same thread count is bitwise repeatable. */
#ifndef PARLM_LIB_PARALLEL_H
#define PARLM_LIB_PARALLEL_H
#include <stdint.h>

/* Slice [*begin, *end) of [0, n) for thread t of nt. */
static inline void parlm_split(int64_t n, int64_t align, int t, int nt, int64_t *begin,
                               int64_t *end)
{
    int64_t blocks = (n + align - 1) / align;
    int64_t b0 = blocks * t / nt, b1 = blocks * (t + 1) / nt;
    *begin = b0 * align < n ? b0 * align : n;
    *end = b1 * align < n ? b1 * align : n;
}

/* Threads worth using for `work` units of roughly equal cost, given that a thread
 * should get at least `grain` units (below that, fork/join costs more than it saves). */
static inline int parlm_threads_for(int64_t work, int64_t grain, int max_threads)
{
    int64_t t = grain > 0 ? work / grain : max_threads;
    if (t < 1)
        t = 1;
    return t < max_threads ? (int)t : max_threads;
}
#endif
