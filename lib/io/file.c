/* lib/io/file.c — whole-file reads for parsers of untrusted files, and atomic writes
 * (temp file, fsync, rename, fsync of the directory) for shards and checkpoints. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../base/error.h"
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

parlm_status parlm_write_file_atomic(const char *path, parlm_write_fn write_fn, void *arg)
{
    if (!path || !write_fn)
        return parlm_error(PARLM_EINVAL, "parlm_write_file_atomic: null argument");
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    if (!tmp)
        return parlm_error(PARLM_ENOMEM, "%s: out of memory", path);
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        parlm_status st = parlm_error(PARLM_EIO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return st;
    }
    parlm_status st = write_fn(f, arg);
    if (st == PARLM_OK && (fflush(f) != 0 || ferror(f)))
        st = parlm_error(PARLM_EIO, "%s: write failed: %s", tmp, strerror(errno));
    if (st == PARLM_OK && fsync(fileno(f)) != 0)
        st = parlm_error(PARLM_EIO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (fclose(f) != 0 && st == PARLM_OK)
        st = parlm_error(PARLM_EIO, "%s: close failed: %s", tmp, strerror(errno));
    if (st == PARLM_OK && rename(tmp, path) != 0)
        st = parlm_error(PARLM_EIO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    if (st != PARLM_OK) {
        unlink(tmp); /* the previous file at path, if any, is untouched */
        free(tmp);
        return st;
    }
    free(tmp);
    /* make the rename itself durable */
    char *dir = strdup(path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
        int fd = open(d, O_RDONLY | O_DIRECTORY);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
        free(dir);
    }
    return PARLM_OK;
}

parlm_status parlm_mkdir_p(const char *path)
{
    if (!path || !*path)
        return parlm_error(PARLM_EINVAL, "parlm_mkdir_p: empty path");
    char *p = strdup(path);
    if (!p)
        return parlm_error(PARLM_ENOMEM, "%s: out of memory", path);
    parlm_status st = PARLM_OK;
    /* each prefix ending before a '/', then the whole path */
    for (char *s = p + 1;; s++) {
        if (*s && *s != '/')
            continue;
        char c = *s;
        *s = '\0';
        struct stat sb;
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            st = parlm_error(PARLM_EIO, "cannot create directory %s: %s", p, strerror(errno));
        else if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode))
            st = parlm_error(PARLM_EIO, "%s: exists and is not a directory", p);
        *s = c;
        if (st != PARLM_OK || !c)
            break;
        while (s[1] == '/')
            s++;
        if (!s[1])
            break;
    }
    free(p);
    return st;
}
