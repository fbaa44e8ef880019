/* lib/io/data.c — llm.c token shards and the batch loader (see parlm/data.h).
 * The loader keeps one shard open and pread()s each rank's B*T+1 window, so memory
 * stays O(B*T) whatever the corpus size, and a position is two integers to resume. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../base/error.h"
#include "file.h"
#include "parlm/data.h"
#include "parlm/tensor.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shard and checkpoint formats are little-endian; big-endian hosts are not supported"
#endif

#define HEADER_INTS 256
#define HEADER_BYTES (HEADER_INTS * 4)

typedef struct shard_src {
    const uint16_t *tokens;
    size_t n;
} shard_src;

static parlm_status write_shard(FILE *f, void *arg)
{
    const shard_src *s = arg;
    int32_t h[HEADER_INTS] = {PARLM_SHARD_MAGIC, PARLM_SHARD_VERSION, (int32_t)s->n};
    if (fwrite(h, 4, HEADER_INTS, f) != HEADER_INTS || fwrite(s->tokens, 2, s->n, f) != s->n)
        return parlm_error(PARLM_EIO, "shard write failed: %s", strerror(errno));
    return PARLM_OK;
}

parlm_status parlm_shard_write(const char *path, const uint16_t *tokens, size_t n)
{
    if (!path || (!tokens && n))
        return parlm_error(PARLM_EINVAL, "parlm_shard_write: null argument");
    if (n > INT32_MAX)
        return parlm_error(PARLM_EINVAL, "%s: %zu tokens, a shard holds at most 2^31-1", path, n);
    shard_src s = {tokens, n};
    return parlm_write_file_atomic(path, write_shard, &s);
}

/* Reads and checks the header of an open shard; *n = its token count. */
static parlm_status check_header(int fd, const char *path, size_t *n)
{
    int32_t h[HEADER_INTS];
    struct stat st;
    if (fstat(fd, &st) != 0)
        return parlm_error(PARLM_EIO, "%s: %s", path, strerror(errno));
    ssize_t got = pread(fd, h, HEADER_BYTES, 0);
    if (got != HEADER_BYTES)
        return parlm_error(PARLM_EFORMAT, "%s: truncated header (%lld of %d bytes)", path,
                           (long long)(got < 0 ? 0 : got), HEADER_BYTES);
    if (h[0] != PARLM_SHARD_MAGIC)
        return parlm_error(PARLM_EFORMAT, "%s: bad magic %d (a token shard has %d)", path, h[0],
                           PARLM_SHARD_MAGIC);
    if (h[1] != PARLM_SHARD_VERSION)
        return parlm_error(PARLM_EFORMAT, "%s: unsupported shard version %d (expected %d)", path,
                           h[1], PARLM_SHARD_VERSION);
    if (h[2] < 0)
        return parlm_error(PARLM_EFORMAT, "%s: negative token count %d", path, h[2]);
    long long want = HEADER_BYTES + 2LL * h[2];
    if ((long long)st.st_size != want)
        return parlm_error(PARLM_EFORMAT, "%s: header says %d tokens (%lld bytes) but the file "
                           "has %lld bytes%s", path, h[2], want, (long long)st.st_size,
                           (long long)st.st_size < want ? ": truncated" : "");
    *n = (size_t)h[2];
    return PARLM_OK;
}

parlm_status parlm_shard_count(const char *path, size_t *n)
{
    if (!path || !n)
        return parlm_error(PARLM_EINVAL, "parlm_shard_count: null argument");
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return parlm_error(PARLM_EIO, "%s: %s", path, strerror(errno));
    parlm_status st = check_header(fd, path, n);
    close(fd);
    return st;
}

parlm_status parlm_shard_read(const char *path, uint16_t **tokens, size_t *n)
{
    if (!path || !tokens || !n)
        return parlm_error(PARLM_EINVAL, "parlm_shard_read: null argument");
    *tokens = NULL;
    *n = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return parlm_error(PARLM_EIO, "%s: %s", path, strerror(errno));
    size_t count;
    parlm_status st = check_header(fd, path, &count);
    uint16_t *buf = NULL;
    if (st == PARLM_OK && !(buf = parlm_alloc(count, 2)))
        st = parlm_error(PARLM_ENOMEM, "%s: cannot allocate %zu tokens", path, count);
    if (st == PARLM_OK && pread(fd, buf, count * 2, HEADER_BYTES) != (ssize_t)(count * 2))
        st = parlm_error(PARLM_EIO, "%s: short read", path);
    close(fd);
    if (st != PARLM_OK) {
        parlm_free(buf);
        return st;
    }
    *tokens = buf;
    *n = count;
    return PARLM_OK;
}

parlm_status parlm_data_probe(const char *path, parlm_data_kind *kind)
{
    if (!path || !kind)
        return parlm_error(PARLM_EINVAL, "parlm_data_probe: null argument");
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return parlm_error(PARLM_EIO, "%s: %s", path, strerror(errno));
    unsigned char head[4096];
    ssize_t got = pread(fd, head, sizeof head, 0);
    parlm_status st = PARLM_OK;
    size_t len = strlen(path), n;
    int32_t magic = 0;
    if (got >= 4)
        memcpy(&magic, head, 4);
    if (got < 0) {
        st = parlm_error(PARLM_EIO, "%s: %s", path, strerror(errno));
    } else if ((len >= 4 && !strcmp(path + len - 4, ".bin")) || magic == PARLM_SHARD_MAGIC) {
        st = check_header(fd, path, &n); /* the message names the file and the field */
        *kind = PARLM_DATA_SHARD;
    } else {
        /* a damaged shard (say a flipped magic bit) has NULs in its header: never "text" */
        const unsigned char *nul = memchr(head, 0, (size_t)got);
        if (nul)
            st = parlm_error(PARLM_EFORMAT, "%s: neither a token shard (magic %d, a shard has "
                             "%d) nor text (a NUL byte at offset %td)", path, magic,
                             PARLM_SHARD_MAGIC, nul - head);
        *kind = PARLM_DATA_TEXT;
    }
    close(fd);
    return st;
}

/* Four independent multiply-rotate lanes over 8-byte words (so the loop pipelines),
 * folded with the length at the end: fast enough to read at disk speed. */
static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
#define MIX_P1 0x9E3779B185EBCA87ULL
#define MIX_P2 0xC2B2AE3D27D4EB4FULL

parlm_status parlm_shard_checksum(const char *path, uint64_t *sum)
{
    if (!path || !sum)
        return parlm_error(PARLM_EINVAL, "parlm_shard_checksum: null argument");
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return parlm_error(PARLM_EIO, "%s: %s", path, strerror(errno));
    enum { CHUNK = 1 << 20 };
    uint64_t *buf = parlm_alloc(CHUNK / 8, 8);
    if (!buf) {
        close(fd);
        return parlm_error(PARLM_ENOMEM, "%s: out of memory", path);
    }
    uint64_t lane[4] = {MIX_P1, MIX_P2, ~MIX_P1, ~MIX_P2}, total = 0;
    parlm_status st = PARLM_OK;
    for (;;) {
        ssize_t got = 0; /* fill the whole chunk (a short read() must not shift the lanes) */
        while (got < CHUNK) {
            ssize_t r = read(fd, (char *)buf + got, (size_t)(CHUNK - got));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                if (r < 0)
                    st = parlm_error(PARLM_EIO, "%s: %s", path, strerror(errno));
                break;
            }
            got += r;
        }
        if (st != PARLM_OK || got == 0)
            break;
        size_t words = (size_t)got / 8;
        if ((size_t)got % 8) { /* only the last chunk has a tail: zero-pad it */
            memset((char *)buf + got, 0, 8 - (size_t)got % 8);
            words++;
        }
        for (size_t i = 0; i < words; i++)
            lane[i & 3] = rotl64(lane[i & 3] + buf[i] * MIX_P2, 31) * MIX_P1;
        total += (uint64_t)got;
    }
    close(fd);
    parlm_free(buf);
    uint64_t h = total * MIX_P1;
    for (int k = 0; k < 4; k++)
        h = rotl64(h ^ lane[k], 27) * MIX_P1 + MIX_P2;
    h ^= h >> 29;
    *sum = h * MIX_P2;
    return st;
}

/* ---- loader ---------------------------------------------------------------------- */

struct parlm_loader {
    char **paths;
    size_t *ntok;
    size_t nshards;
    uint64_t total;
    int B, T, rank, nranks, vocab;
    size_t shard;     /* current shard */
    uint64_t pos;     /* token offset of the next block */
    int fd;           /* open descriptor of paths[open_shard], or -1 */
    size_t open_shard;
    uint16_t *buf;    /* B*T+1 tokens */
};

void parlm_loader_free(parlm_loader *l)
{
    if (!l)
        return;
    if (l->fd >= 0)
        close(l->fd);
    for (size_t i = 0; i < l->nshards; i++)
        free(l->paths[i]);
    free(l->paths);
    free(l->ntok);
    parlm_free(l->buf);
    free(l);
}

parlm_status parlm_loader_open(parlm_loader **out, const char *pattern, int B, int T, int rank,
                               int nranks, int vocab)
{
    if (!out || !pattern)
        return parlm_error(PARLM_EINVAL, "parlm_loader_open: null argument");
    *out = NULL;
    if (B < 1 || T < 1 || nranks < 1 || rank < 0 || rank >= nranks || vocab < 0)
        return parlm_error(PARLM_EINVAL, "parlm_loader_open: need B, T >= 1 and 0 <= rank < "
                           "nranks (got B=%d T=%d rank=%d nranks=%d)", B, T, rank, nranks);
    uint64_t block = (uint64_t)nranks * (uint64_t)B * (uint64_t)T;
    if (block > (uint64_t)1 << 40)
        return parlm_error(PARLM_EINVAL, "parlm_loader_open: R*B*T = %llu is too large",
                           (unsigned long long)block);
    glob_t g;
    int gr = glob(pattern, 0, NULL, &g);
    if (gr != 0 || g.gl_pathc == 0) {
        if (gr == 0)
            globfree(&g);
        return parlm_error(PARLM_EIO, "no token shard matches '%s'", pattern);
    }
    parlm_loader *l = calloc(1, sizeof *l);
    parlm_status st = PARLM_OK;
    if (!l) {
        globfree(&g);
        return parlm_error(PARLM_ENOMEM, "parlm_loader_open: out of memory");
    }
    l->fd = -1;
    l->B = B, l->T = T, l->rank = rank, l->nranks = nranks, l->vocab = vocab;
    l->paths = calloc(g.gl_pathc, sizeof *l->paths);
    l->ntok = calloc(g.gl_pathc, sizeof *l->ntok);
    l->buf = parlm_alloc((size_t)B * (size_t)T + 1, 2);
    if (!l->paths || !l->ntok || !l->buf)
        st = parlm_error(PARLM_ENOMEM, "parlm_loader_open: out of memory");
    for (size_t i = 0; st == PARLM_OK && i < g.gl_pathc; i++) { /* glob sorts by name */
        if (!(l->paths[i] = strdup(g.gl_pathv[i]))) {
            st = parlm_error(PARLM_ENOMEM, "parlm_loader_open: out of memory");
            break;
        }
        l->nshards = i + 1;
        st = parlm_shard_count(l->paths[i], &l->ntok[i]);
        if (st == PARLM_OK && l->ntok[i] < block + 1)
            st = parlm_error(PARLM_EFORMAT, "%s: %zu tokens, fewer than one batch needs "
                             "(ranks*B*T+1 = %llu)", l->paths[i], l->ntok[i],
                             (unsigned long long)(block + 1));
        l->total += l->ntok[i];
    }
    globfree(&g);
    if (st != PARLM_OK) {
        parlm_loader_free(l);
        return st;
    }
    *out = l;
    return PARLM_OK;
}

parlm_status parlm_loader_next(parlm_loader *l, int32_t *inputs, int32_t *targets)
{
    if (!l || !inputs || !targets)
        return parlm_error(PARLM_EINVAL, "parlm_loader_next: null argument");
    uint64_t bt = (uint64_t)l->B * (uint64_t)l->T, block = bt * (uint64_t)l->nranks;
    if (l->pos + block + 1 > l->ntok[l->shard]) {
        l->shard = (l->shard + 1) % l->nshards;
        l->pos = 0;
    }
    if (l->fd < 0 || l->open_shard != l->shard) {
        if (l->fd >= 0)
            close(l->fd);
        l->fd = open(l->paths[l->shard], O_RDONLY);
        if (l->fd < 0)
            return parlm_error(PARLM_EIO, "%s: %s", l->paths[l->shard], strerror(errno));
        l->open_shard = l->shard;
        size_t n;
        parlm_status st = check_header(l->fd, l->paths[l->shard], &n); /* changed since open? */
        if (st == PARLM_OK && n != l->ntok[l->shard])
            st = parlm_error(PARLM_EFORMAT, "%s: changed while training (%zu tokens, was %zu)",
                             l->paths[l->shard], n, l->ntok[l->shard]);
        if (st != PARLM_OK) {
            close(l->fd);
            l->fd = -1;
            return st;
        }
    }
    uint64_t start = l->pos + bt * (uint64_t)l->rank;
    size_t bytes = (size_t)(bt + 1) * 2;
    ssize_t got = pread(l->fd, l->buf, bytes, (off_t)(HEADER_BYTES + 2 * start));
    if (got != (ssize_t)bytes)
        return parlm_error(PARLM_EIO, "%s: short read at token %llu", l->paths[l->shard],
                           (unsigned long long)start);
    for (uint64_t i = 0; i < bt + 1; i++)
        if (l->vocab && l->buf[i] >= l->vocab)
            return parlm_error(PARLM_EFORMAT, "%s: token %u at position %llu is outside the "
                               "vocabulary (%d)", l->paths[l->shard], l->buf[i],
                               (unsigned long long)(start + i), l->vocab);
    for (uint64_t i = 0; i < bt; i++) {
        inputs[i] = l->buf[i];
        targets[i] = l->buf[i + 1];
    }
    l->pos += block;
    return PARLM_OK;
}

parlm_loader_pos parlm_loader_tell(const parlm_loader *l)
{
    parlm_loader_pos p = {0, 0};
    if (l) {
        p.shard = l->shard;
        p.position = l->pos;
    }
    return p;
}

parlm_status parlm_loader_seek(parlm_loader *l, parlm_loader_pos pos)
{
    if (!l)
        return parlm_error(PARLM_EINVAL, "parlm_loader_seek: null loader");
    if (pos.shard >= l->nshards || pos.position > l->ntok[pos.shard])
        return parlm_error(PARLM_EINVAL, "parlm_loader_seek: position (shard %llu, token %llu) "
                           "is outside the %zu shards", (unsigned long long)pos.shard,
                           (unsigned long long)pos.position, l->nshards);
    l->shard = (size_t)pos.shard;
    l->pos = pos.position;
    return PARLM_OK;
}

size_t parlm_loader_num_shards(const parlm_loader *l) { return l ? l->nshards : 0; }
const char *parlm_loader_shard_path(const parlm_loader *l, size_t i)
{
    return l && i < l->nshards ? l->paths[i] : NULL;
}
uint64_t parlm_loader_num_tokens(const parlm_loader *l) { return l ? l->total : 0; }
