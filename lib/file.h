/* lib/file.h — internal: whole-file reads with size limits, for parsers of
 * untrusted files (errors name the file). */
#ifndef PARLM_LIB_FILE_H
#define PARLM_LIB_FILE_H
#include <stddef.h>

#include "parlm/status.h"

/* Reads all of path into *buf (NUL-terminated, free with parlm_free), *len bytes.
 * A file larger than max_bytes is PARLM_EFORMAT; a missing or unreadable file PARLM_EIO. */
parlm_status parlm_read_file(const char *path, size_t max_bytes, char **buf, size_t *len);
#endif
