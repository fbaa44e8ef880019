/* parlm/status.h — error reporting shared by every parlm call.
 * Functions return a parlm_status: PARLM_OK (0) or a negative error kind. The
 * human-readable message of the last failure is kept per thread and read with
 * parlm_last_error(). The library never exits, aborts or prints. */
#ifndef PARLM_STATUS_H
#define PARLM_STATUS_H

#if defined(__GNUC__)
#define PARLM_API __attribute__((visibility("default")))
#define PARLM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PARLM_API
#define PARLM_PRINTF(a, b)
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum parlm_status {
    PARLM_OK = 0,
    PARLM_EINVAL = -1,       /* bad argument: null pointer, bad shape, bad value */
    PARLM_ENOMEM = -2,       /* allocation failed or size overflow */
    PARLM_EUNSUPPORTED = -3, /* the CPU / build / topology cannot do what was asked */
    PARLM_EIO = -4,          /* file system error */
    PARLM_EFORMAT = -5,      /* malformed, truncated or mismatched file */
    PARLM_ESYSTEM = -6,      /* an external library (hwloc, MPI, ...) failed */
    PARLM_EBUSY = -7,        /* held by another process (a locked checkpoint directory) */
    PARLM_ECANCELED = -8,    /* stopped on request (parlm_gpt_set_cancel) */
} parlm_status;

/* Short name of a status code ("invalid argument", ...); never NULL. */
PARLM_API const char *parlm_strerror(parlm_status s);

/* Message describing the most recent failure on the calling thread
 * ("" if none). Valid until the next failing parlm call on this thread. */
PARLM_API const char *parlm_last_error(void);

/* Forget the calling thread's last error message. */
PARLM_API void parlm_clear_error(void);

/* Records "fmt ..." (printf-style) as the calling thread's last error and returns s
 * unchanged: how code built on parlm reports a failure the way the library does, so that
 * its caller reads one message with parlm_last_error() whichever side failed. For
 * callbacks the library calls (a parlm_gpt_tp_comm) and for layers over it (parlm-serve's
 * engine): return parlm_error(PARLM_EINVAL, "block size %d < 1", b); */
PARLM_API parlm_status parlm_error(parlm_status s, const char *fmt, ...) PARLM_PRINTF(2, 3);

/* Version of the library that is running (may differ from the headers compiled against). */
PARLM_API const char *parlm_version(void);

#ifdef __cplusplus
}
#endif
#endif
