/* base/error.h — internal: set the thread-local error message and return the code.
 * The one leaf module below every layer: lib, numa and mpi include it from here, so
 * no arrow runs up from numa/ or mpi/ into lib/. */
#ifndef PARLM_BASE_ERROR_H
#define PARLM_BASE_ERROR_H
#include "parlm/status.h"

#if defined(__GNUC__)
#define PARLM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PARLM_PRINTF(a, b)
#endif

/* Records "fmt ..." as the calling thread's last error; returns s unchanged,
 * so call sites read: return parlm_error(PARLM_EINVAL, "M must be >= 1, got %lld", M); */
parlm_status parlm_error(parlm_status s, const char *fmt, ...) PARLM_PRINTF(2, 3);

/* The one macro that returns: evaluates x (a parlm_status) once and returns it from the
 * calling function unless it is PARLM_OK. Only for functions that own nothing to free
 * at that point (the model's forward/backward chains of kernel calls, where writing
 * each check out would bury the arithmetic); anything holding a resource writes its
 * check out and frees first. The name says what it does: no hidden control flow. */
#define RETURN_IF_ERROR(x)                                                                    \
    do {                                                                                      \
        parlm_status st_ = (x);                                                               \
        if (st_ != PARLM_OK)                                                                  \
            return st_;                                                                       \
    } while (0)

#endif
