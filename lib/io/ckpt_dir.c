/* lib/io/ckpt_dir.c — a training run's checkpoint directory (parlm/checkpoint.h): final files
 * ckpt_<step>.bin, a lock held by the one writer, rotation. The idea to know: a file is
 * deleted only when this handle knows a newer good one exists and the file itself was not
 * found unreadable; temp files of a write in progress never match the final names, and
 * while we hold the lock no one else writes here, so any temp file we see is stale. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../base/error.h"
#include "ckpt_format.h"
#include "file.h"
#include "parlm/checkpoint.h"

struct parlm_ckpt_dir {
    char *path;
    int lock_fd;          /* the lock file, held with flock while open */
    char stale[128];      /* holder named in the lock file that was no longer running */
    char no_lock[160];    /* why the directory is not locked ("" when it is) */
    int removed_tmp;      /* stale temp files removed at open */
    int64_t *good, *bad;  /* steps written or loaded by this handle / found unreadable */
    int ngood, nbad, cap_good, cap_bad;
};

/* "ckpt_" + the step in 8 or more digits + ".bin"; *tail: what follows ("" for a final name) */
static int parse_name(const char *name, int64_t *step, const char **tail)
{
    if (strncmp(name, "ckpt_", 5))
        return 0;
    const char *p = name + 5;
    int64_t s = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (digits == 18)
            return 0;
        s = s * 10 + (*p - '0');
    }
    if (!digits || strncmp(p, ".bin", 4))
        return 0;
    char canon[32]; /* only the name parlm_ckpt_path gives this step (ckpt_12.bin is not) */
    snprintf(canon, sizeof canon, "ckpt_%08lld", (long long)s);
    if (strncmp(name, canon, (size_t)(p - name)) || strlen(canon) != (size_t)(p - name))
        return 0;
    *step = s;
    *tail = p + 4;
    return 1;
}

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

parlm_status parlm_ckpt_list(const char *dir, int64_t *steps, int max, int *n)
{
    if (!dir || !n || (max > 0 && !steps) || max < 0)
        return parlm_error(PARLM_EINVAL, "parlm_ckpt_list: bad argument");
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return PARLM_OK; /* no directory yet: no checkpoints */
        return parlm_error(PARLM_EIO, "%s: %s", dir, strerror(errno));
    }
    int64_t *all = NULL;
    size_t count = 0, cap = 0;
    parlm_status st = PARLM_OK;
    for (struct dirent *e; (e = readdir(d));) {
        int64_t s;
        const char *tail;
        if (!parse_name(e->d_name, &s, &tail) || *tail)
            continue;
        if (count == cap) {
            int64_t *a = realloc(all, (cap = cap ? 2 * cap : 64) * sizeof *a);
            if (!a) {
                st = parlm_error(PARLM_ENOMEM, "%s: out of memory listing checkpoints", dir);
                break;
            }
            all = a;
        }
        all[count++] = s;
    }
    closedir(d);
    if (st == PARLM_OK) {
        /* an empty directory leaves all NULL, which neither qsort nor memcpy may see */
        if (count > 1)
            qsort(all, count, sizeof *all, cmp_desc);
        *n = count < (size_t)max ? (int)count : max;
        if (*n > 0)
            memcpy(steps, all, (size_t)*n * sizeof *all);
    }
    free(all);
    return st;
}

parlm_status parlm_ckpt_path(char *buf, size_t len, const char *dir, int64_t step)
{
    if (!buf || !dir || step < 0)
        return parlm_error(PARLM_EINVAL, "parlm_ckpt_path: bad argument");
    int k = snprintf(buf, len, "%s/ckpt_%08lld.bin", dir, (long long)step);
    if (k < 0 || (size_t)k >= len)
        return parlm_error(PARLM_EINVAL, "%s: path too long", dir);
    return PARLM_OK;
}

static parlm_status remember(int64_t **v, int *n, int *cap, int64_t step)
{
    for (int i = 0; i < *n; i++)
        if ((*v)[i] == step)
            return PARLM_OK;
    if (*n == *cap) {
        int64_t *a = realloc(*v, (size_t)(*cap = *cap ? 2 * *cap : 16) * sizeof *a);
        if (!a)
            return parlm_error(PARLM_ENOMEM, "checkpoint directory: out of memory");
        *v = a;
    }
    (*v)[(*n)++] = step;
    return PARLM_OK;
}

static int known(const int64_t *v, int n, int64_t step)
{
    for (int i = 0; i < n; i++)
        if (v[i] == step)
            return 1;
    return 0;
}

/* Takes the lock: flock is released by the kernel when its holder dies, so a lock file
 * left by a killed run is simply taken over; its content (pid@host of the last holder)
 * is only for messages. The file stays in place (unlinking a lock file races). */
static parlm_status take_lock(parlm_ckpt_dir *d)
{
    size_t len = strlen(d->path) + 8;
    char *lp = malloc(len);
    if (!lp)
        return parlm_error(PARLM_ENOMEM, "%s: out of memory", d->path);
    snprintf(lp, len, "%s/lock", d->path);
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        parlm_status st = parlm_error(PARLM_EIO, "%s: cannot create the lock file: %s "
                                      "(is the directory writable?)", lp, strerror(errno));
        free(lp);
        return st;
    }
    char holder[128] = "";
    ssize_t got = pread(fd, holder, sizeof holder - 1, 0);
    holder[got > 0 ? got : 0] = '\0';
    holder[strcspn(holder, "\n")] = '\0';
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK || e == EINTR) {
            close(fd);
            free(lp);
            return parlm_error(PARLM_EBUSY, "%s is in use by pid %s (its lock %s/lock is held: "
                               "another parlm-train writes checkpoints there; wait for it to "
                               "end or choose another directory)", d->path,
                               holder[0] ? holder : "? (unknown)", d->path);
        }
        /* a file system without locks (e.g. Lustre mounted without flock): go on, say so */
        snprintf(d->no_lock, sizeof d->no_lock, "%s: cannot lock (%s)", lp, strerror(e));
        close(fd);
        free(lp);
        return PARLM_OK;
    }
    /* re-read under the lock: a holder that ended cleanly left the file empty */
    got = pread(fd, holder, sizeof holder - 1, 0);
    holder[got > 0 ? got : 0] = '\0';
    holder[strcspn(holder, "\n")] = '\0';
    snprintf(d->stale, sizeof d->stale, "%s", holder);
    char me[300], host[256] = "?";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    int n = snprintf(me, sizeof me, "%ld@%s\n", (long)getpid(), host);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, me, (size_t)n, 0) != n || fsync(fd) != 0) {
        parlm_status st = parlm_error(PARLM_EIO, "%s: cannot write: %s", lp, strerror(errno));
        close(fd);
        free(lp);
        return st;
    }
    free(lp);
    d->lock_fd = fd;
    return PARLM_OK;
}

/* Under our lock no one else writes here: every ckpt_N.bin.tmp.* is a dead writer's. */
static void remove_stale_tmp(parlm_ckpt_dir *d)
{
    DIR *dd = opendir(d->path);
    for (struct dirent *e; dd && (e = readdir(dd));) {
        int64_t s;
        const char *tail;
        if (!parse_name(e->d_name, &s, &tail) || strncmp(tail, ".tmp.", 5))
            continue;
        size_t len = strlen(d->path) + strlen(e->d_name) + 2;
        char *p = malloc(len);
        if (p) {
            snprintf(p, len, "%s/%s", d->path, e->d_name);
            d->removed_tmp += unlink(p) == 0;
            free(p);
        }
    }
    if (dd)
        closedir(dd);
}

/* A lock file can be writable in a directory that is not (made by someone else, or
 * a read-only remount): create and remove a temp file now, not after hours of compute.
 * Its name is a temp name, so a kill between the two calls leaves only a stale temp. */
static parlm_status probe_write(parlm_ckpt_dir *d)
{
    size_t len = strlen(d->path) + 48;
    char *p = malloc(len);
    if (!p)
        return parlm_error(PARLM_ENOMEM, "%s: out of memory", d->path);
    snprintf(p, len, "%s/ckpt_00000000.bin.tmp.%ld", d->path, (long)getpid());
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        parlm_status st = parlm_error(PARLM_EIO, "%s: cannot create a file in the directory: "
                                      "%s (is it writable?)", d->path, strerror(errno));
        free(p);
        return st;
    }
    close(fd);
    unlink(p);
    free(p);
    return PARLM_OK;
}

parlm_status parlm_ckpt_dir_open(parlm_ckpt_dir **out, const char *path)
{
    if (!out || !path || !*path)
        return parlm_error(PARLM_EINVAL, "parlm_ckpt_dir_open: null or empty argument");
    *out = NULL;
    parlm_status st = parlm_mkdir_p(path);
    if (st != PARLM_OK)
        return st;
    parlm_ckpt_dir *d = calloc(1, sizeof *d);
    if (!d || !(d->path = strdup(path))) {
        free(d);
        return parlm_error(PARLM_ENOMEM, "%s: out of memory", path);
    }
    d->lock_fd = -1;
    if ((st = take_lock(d)) != PARLM_OK) {
        parlm_ckpt_dir_close(d);
        return st;
    }
    if (d->lock_fd >= 0)
        remove_stale_tmp(d);
    if ((st = probe_write(d)) != PARLM_OK) {
        parlm_ckpt_dir_close(d);
        return st;
    }
    *out = d;
    return PARLM_OK;
}

void parlm_ckpt_dir_close(parlm_ckpt_dir *d)
{
    if (!d)
        return;
    if (d->lock_fd >= 0) { /* empty = released cleanly; closing drops the flock */
        if (ftruncate(d->lock_fd, 0) != 0) {
            /* the lock file keeps our pid; the next holder only mentions it */
        }
        close(d->lock_fd);
    }
    free(d->good);
    free(d->bad);
    free(d->path);
    free(d);
}

parlm_ckpt_dir_info parlm_ckpt_dir_get_info(const parlm_ckpt_dir *d)
{
    parlm_ckpt_dir_info i = {"", "", 0};
    if (d) {
        i.stale_holder = d->stale;
        i.no_lock = d->no_lock;
        i.removed_tmp = d->removed_tmp;
    }
    return i;
}

/* Remembers how loading step went: a file that failed is never deleted by rotation. */
static parlm_status loaded(parlm_ckpt_dir *d, int64_t step, parlm_status st)
{
    if (st == PARLM_OK)
        return remember(&d->good, &d->ngood, &d->cap_good, step);
    if (st != PARLM_ENOMEM) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", parlm_last_error());
        if (remember(&d->bad, &d->nbad, &d->cap_bad, step) != PARLM_OK)
            return PARLM_ENOMEM;
        parlm_error(st, "%s", msg);
    }
    return st;
}

parlm_status parlm_ckpt_dir_load(parlm_ckpt_dir *d, int64_t step, parlm_gpt **out,
                                 parlm_train_state *state)
{
    if (!d || !out || !state)
        return parlm_error(PARLM_EINVAL, "parlm_ckpt_dir_load: null argument");
    *out = NULL;
    char path[4096];
    parlm_status st = parlm_ckpt_path(path, sizeof path, d->path, step);
    if (st == PARLM_OK)
        st = parlm_checkpoint_load(path, out, state);
    if ((st = loaded(d, step, st)) != PARLM_OK) {
        parlm_gpt_free(*out);
        *out = NULL;
    }
    return st;
}

parlm_status parlm_ckpt_dir_load_shards(parlm_ckpt_dir *d, int64_t step,
                                        const parlm_gpt_shard *layout, int n, parlm_gpt **out,
                                        parlm_train_state *state)
{
    if (!d || !out || n < 1)
        return parlm_error(PARLM_EINVAL, "parlm_ckpt_dir_load_shards: bad argument");
    for (int k = 0; k < n; k++)
        out[k] = NULL;
    char path[4096];
    parlm_status st = parlm_ckpt_path(path, sizeof path, d->path, step);
    if (st == PARLM_OK)
        st = parlm_gpt_load_shards(path, layout, n, out, state);
    if ((st = loaded(d, step, st)) != PARLM_OK)
        for (int k = 0; k < n; k++) {
            parlm_gpt_free(out[k]);
            out[k] = NULL;
        }
    return st;
}

parlm_status parlm_ckpt_dir_remove_all(parlm_ckpt_dir *d, int *removed)
{
    if (!d || !removed)
        return parlm_error(PARLM_EINVAL, "parlm_ckpt_dir_remove_all: null argument");
    *removed = 0;
    int64_t steps[256];
    char path[4096];
    for (;;) { /* in rounds of 256 */
        int n;
        parlm_status st = parlm_ckpt_list(d->path, steps, 256, &n);
        if (st != PARLM_OK)
            return st;
        if (!n)
            return PARLM_OK;
        for (int i = 0; i < n; i++) {
            if ((st = parlm_ckpt_path(path, sizeof path, d->path, steps[i])) != PARLM_OK)
                return st;
            if (unlink(path) != 0)
                return parlm_error(PARLM_EIO, "%s: cannot remove: %s", path, strerror(errno));
            ++*removed;
        }
    }
}

/* Before writing step's file: path = its name; a file we never read (or could not) that
 * has this name is kept under another. */
static parlm_status before_save(parlm_ckpt_dir *d, int64_t step, char *path, size_t len)
{
    parlm_status st = parlm_ckpt_path(path, len, d->path, step);
    if (st != PARLM_OK)
        return st;
    struct stat sb;
    if (!known(d->good, d->ngood, step) && stat(path, &sb) == 0) {
        size_t alen = strlen(path) + 16;
        char *aside = malloc(alen);
        if (!aside)
            return parlm_error(PARLM_ENOMEM, "%s: out of memory", path);
        snprintf(aside, alen, "%s.%s", path, known(d->bad, d->nbad, step) ? "unreadable" : "replaced");
        int ok = rename(path, aside) == 0;
        st = ok ? PARLM_OK : parlm_error(PARLM_EIO, "%s: cannot move aside to %s: %s", path,
                                         aside, strerror(errno));
        free(aside);
    }
    return st;
}

/* After step's file is written: rotation. Of the files up to this step, the newest `keep`
 * that are not known to be unreadable stay; older ones are superseded by this good one.
 * Newer steps (a file this run has not reached) are never touched. */
static parlm_status after_save(parlm_ckpt_dir *d, int64_t step, int keep)
{
    parlm_status st = remember(&d->good, &d->ngood, &d->cap_good, step);
    if (st != PARLM_OK)
        return st;
    int64_t steps[4096];
    int n, kept = 0;
    if ((st = parlm_ckpt_list(d->path, steps, 4096, &n)) != PARLM_OK)
        return st;
    char old[4096];
    for (int i = 0; i < n; i++) {
        if (steps[i] > step || known(d->bad, d->nbad, steps[i]))
            continue;
        if (kept++ < keep)
            continue;
        if (parlm_ckpt_path(old, sizeof old, d->path, steps[i]) == PARLM_OK)
            unlink(old); /* a failure leaves one more file, nothing is lost */
    }
    return PARLM_OK;
}

parlm_status parlm_ckpt_dir_save(parlm_ckpt_dir *d, parlm_gpt *m, const parlm_train_state *state,
                                 int keep, char *path, size_t len)
{
    if (!d || !m || !state || keep < 1 || !path)
        return parlm_error(PARLM_EINVAL, "parlm_ckpt_dir_save: bad argument");
    parlm_status st = before_save(d, state->step, path, len);
    if (st == PARLM_OK)
        st = parlm_checkpoint_save(path, m, state);
    return st == PARLM_OK ? after_save(d, state->step, keep) : st;
}

parlm_status parlm_ckpt_dir_save_shards(parlm_ckpt_dir *d, parlm_gpt *const *shards, int n,
                                        struct parlm_comm *comm, const parlm_train_state *state,
                                        int keep, char *path, size_t len)
{
    if ((!shards && n) || n < 0 || (n == 0 && !comm) || !state || keep < 1 || (d && !path))
        return parlm_error(PARLM_EINVAL, "parlm_ckpt_dir_save_shards: bad argument");
    for (int k = 0; k < n; k++)
        if (!shards[k])
            return parlm_error(PARLM_EINVAL, "parlm_ckpt_dir_save_shards: shard %d is NULL", k);
    /* rank 0 (the one with the handle) writes; a failure before writing still lets the
     * others hand over their slices, so no rank waits forever */
    parlm_status prior = d ? before_save(d, state->step, path, len) : PARLM_OK;
    parlm_status st = parlm_ckpt_save_shards_local(d ? path : NULL, prior, shards, n, comm, state);
    if (d && st == PARLM_OK)
        st = after_save(d, state->step, keep);
    return parlm_ckpt_share_status(comm, st);
}
