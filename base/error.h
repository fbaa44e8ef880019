/* base/error.h — internal: errors as every layer reports them (parlm_error) and the one
 * macro that returns on an error.
 * The one leaf module below every layer: lib, numa and mpi include it from here, so
 * no arrow runs up from numa/ or mpi/ into lib/. */
#ifndef PARLM_BASE_ERROR_H
#define PARLM_BASE_ERROR_H
#include "parlm/status.h"

/* parlm_error(status, fmt, ...), which records the message and returns the status, is
 * declared in parlm/status.h: it is public, so that code layered over the library (lib/serve,
 * a user's callbacks) writes the same thread-local message parlm_last_error() reads. */

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
