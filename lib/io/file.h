/* lib/io/file.h — internal: whole-file reads with size limits, for parsers of
 * untrusted files (errors name the file); atomic writes; directory creation. */
#ifndef PARLM_LIB_FILE_H
#define PARLM_LIB_FILE_H
#include <stddef.h>
#include <stdio.h>

#include "parlm/status.h"

/* Reads all of path into *buf (NUL-terminated, free with parlm_free), *len bytes.
 * A file larger than max_bytes is PARLM_EFORMAT; a missing or unreadable file PARLM_EIO. */
parlm_status parlm_read_file(const char *path, size_t max_bytes, char **buf, size_t *len);

/* Writes a file so that a crash never leaves a half-written one under `path`: the
 * bytes go to path.tmp.PID, are fsync'ed, renamed over path, and the directory is
 * fsync'ed. write_fn(f, arg) writes the content and returns PARLM_OK or an error. */
typedef parlm_status (*parlm_write_fn)(FILE *f, void *arg);
parlm_status parlm_write_file_atomic(const char *path, parlm_write_fn write_fn, void *arg);

/* mkdir -p: creates path and its missing parents (mode 0777 before umask). An existing
 * directory is fine; an existing non-directory is PARLM_EIO naming it. */
parlm_status parlm_mkdir_p(const char *path);
#endif
