/* base/error.c — thread-local last-error message behind parlm_last_error(). */
#include <stdarg.h>
#include <stdio.h>

#include "error.h"
#include "parlm/version.h"

static _Thread_local char last_msg[512];

parlm_status parlm_error(parlm_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_msg, sizeof last_msg, fmt, ap);
    va_end(ap);
    return s;
}

const char *parlm_last_error(void) { return last_msg; }

void parlm_clear_error(void) { last_msg[0] = '\0'; }

const char *parlm_strerror(parlm_status s)
{
    switch (s) {
    case PARLM_OK: return "ok";
    case PARLM_EINVAL: return "invalid argument";
    case PARLM_ENOMEM: return "out of memory";
    case PARLM_EUNSUPPORTED: return "unsupported";
    case PARLM_EIO: return "I/O error";
    case PARLM_EFORMAT: return "bad file format";
    case PARLM_ESYSTEM: return "system library error";
    case PARLM_EBUSY: return "in use by another process";
    case PARLM_ECANCELED: return "canceled";
    }
    return "unknown error";
}

const char *parlm_version(void) { return PARLM_VERSION; }
