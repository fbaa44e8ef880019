/* lib/file.c — whole-file reads for the parsers of vocabularies and headers. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "file.h"
#include "parlm/tensor.h"

parlm_status parlm_read_file(const char *path, size_t max_bytes, char **buf, size_t *len)
{
    if (!path || !buf || !len)
        return parlm_error(PARLM_EINVAL, "parlm_read_file: null argument");
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return parlm_error(PARLM_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return parlm_error(PARLM_EIO, "%s: not a regular file", path);
    }
    if ((unsigned long long)st.st_size > max_bytes) {
        fclose(f);
        return parlm_error(PARLM_EFORMAT, "%s: %lld bytes, more than the %zu expected at most",
                           path, (long long)st.st_size, max_bytes);
    }
    size_t size = (size_t)st.st_size;
    char *p = parlm_alloc(size + 1, 1);
    if (!p) {
        fclose(f);
        return parlm_error(PARLM_ENOMEM, "%s: cannot allocate %zu bytes", path, size + 1);
    }
    size_t got = fread(p, 1, size, f);
    int err = ferror(f);
    fclose(f);
    if (err || got != size) {
        parlm_free(p);
        return parlm_error(PARLM_EIO, "%s: read %zu of %zu bytes", path, got, size);
    }
    p[size] = '\0';
    *buf = p;
    *len = size;
    return PARLM_OK;
}
