/* parlm/peak.h — the roofline ceiling: this machine's f32 FMA throughput, for MFU.
 * A lone measurement on a shared machine reads low, so a program keeps the best figure
 * seen for this CPU model, kernel set and thread count in a small cache file. */
#ifndef PARLM_PEAK_H
#define PARLM_PEAK_H
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* iterations of one measurement run: ~0.1 s on a recent x86 core */
#define PARLM_PEAK_ITERS 4000000LL

/* f32 FMA throughput (GFLOP/s) of `threads` threads (clamped to 1..256) each running
 * `iters` iterations of the current kernel set's FMA loop, after a warm-up: the best of
 * 7 runs; *seconds (may be NULL) = that run's time. */
PARLM_API double parlm_peak_gflops(int threads, int64_t iters, double *seconds);

/* The best peak seen on this machine: max(measured, the figure stored in the cache file
 * `path` for this CPU model, kernel set and thread count), which it stores there when
 * measured is higher (through a temporary file, atomic for readers; missing directories on
 * the way are made). path = NULL or "": no cache. The file is the program's choice (the
 * library reads no environment; parlm-train's: $PARLM_PEAK_CACHE, else
 * $XDG_CACHE_HOME/parlm/peak, else ~/.cache/parlm/peak). Any trouble with it (unreadable,
 * unwritable, malformed lines) just returns measured. *cached (may be NULL) = the figure
 * found (0: none). */
PARLM_API double parlm_peak_remember(const char *path, int threads, double measured,
                                     double *cached);

#ifdef __cplusplus
}
#endif
#endif
