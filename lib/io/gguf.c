/* lib/io/gguf.c — GGUF v3 reader (memory-mapped, validated) and writer (atomic).
 * Reading walks the file with a cursor that refuses to step past the end: every length
 * and count read from the file is checked against the bytes left before it is used to
 * allocate, loop or point, so a hostile file costs at most its own size in memory.
 * Duplicate keys and tensor names, misaligned or overlapping tensor data are errors. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../base/error.h"
#include "file.h"
#include "parlm/gguf.h"
#include "parlm/tensor.h"

#define GGUF_MAX_NAME 63     /* ggml's GGML_MAX_NAME (64) with its NUL */
#define GGUF_MAX_KEY 65535   /* spec: keys are at most 2^16-1 bytes */
#define GGUF_MAX_NESTING 8   /* arrays of arrays: bounds the recursion */

typedef struct kv {
    char *key;
    uint32_t type, elem; /* elem: element type of an array */
    uint64_t n;          /* array length */
    const uint8_t *val;  /* the value (for arrays: the first element) in the mapping */
    uint64_t *stroff;    /* arrays of strings: file offset of each element */
} kv;

struct parlm_gguf {
    char *path;
    uint8_t *map;
    uint64_t size;
    uint32_t version, align;
    uint64_t data_off;
    int64_t nkv, ntensors;
    kv *kv;
    parlm_gguf_tensor *t;
};

/* ---- the cursor ------------------------------------------------------------------ */

typedef struct cursor {
    const uint8_t *p;
    uint64_t pos, size;
    const char *path;
} cursor;

static parlm_status need(cursor *c, uint64_t n, const char *what)
{
    if (n > c->size - c->pos)
        return parlm_error(PARLM_EFORMAT,
                           "%s: truncated: %s needs %llu bytes at offset %llu, the file has %llu",
                           c->path, what, (unsigned long long)n, (unsigned long long)c->pos,
                           (unsigned long long)c->size);
    return PARLM_OK;
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static parlm_status rd(cursor *c, int n, uint64_t *v, const char *what)
{
    parlm_status s = need(c, (uint64_t)n, what);
    if (s)
        return s;
    *v = le(c->p + c->pos, n);
    c->pos += (uint64_t)n;
    return PARLM_OK;
}

/* bytes of one scalar of type t; 0 for STRING, ARRAY and unknown types */
static uint64_t scalar_size(uint32_t t)
{
    static const uint8_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < sizeof sz ? sz[t] : 0;
}

static const char *type_name(uint32_t t)
{
    static const char *const n[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32",
                                    "float32", "bool", "string", "array", "uint64", "int64",
                                    "float64"};
    return t < sizeof n / sizeof n[0] ? n[t] : "unknown";
}

/* a string: length, then the bytes; *off = offset of the bytes */
static parlm_status rd_str(cursor *c, uint64_t max, uint64_t *off, uint64_t *len, const char *what)
{
    parlm_status s = rd(c, 8, len, what);
    if (s)
        return s;
    if (*len > max)
        return parlm_error(PARLM_EFORMAT, "%s: %s is %llu bytes long, at most %llu allowed",
                           c->path, what, (unsigned long long)*len, (unsigned long long)max);
    if ((s = need(c, *len, what)))
        return s;
    *off = c->pos;
    c->pos += *len;
    return PARLM_OK;
}

/* Validates and steps over one value of type t (elements of arrays included). For an
 * array of strings with stroff != NULL, records each element's offset. */
static parlm_status skip_value(cursor *c, uint32_t t, int depth, const char *key)
{
    uint64_t sz = scalar_size(t);
    parlm_status s;
    if (sz) {
        if ((s = need(c, sz, key)))
            return s;
        if (t == PARLM_GGUF_BOOL && c->p[c->pos] > 1)
            return parlm_error(PARLM_EFORMAT, "%s: key '%s': bool value %u (must be 0 or 1)",
                               c->path, key, c->p[c->pos]);
        c->pos += sz;
        return PARLM_OK;
    }
    if (t == PARLM_GGUF_STRING) {
        uint64_t off, len;
        return rd_str(c, UINT64_MAX, &off, &len, key);
    }
    if (t != PARLM_GGUF_ARRAY)
        return parlm_error(PARLM_EFORMAT, "%s: key '%s': unknown value type %u", c->path, key, t);
    if (depth >= GGUF_MAX_NESTING)
        return parlm_error(PARLM_EFORMAT, "%s: key '%s': arrays nested deeper than %d", c->path,
                           key, GGUF_MAX_NESTING);
    uint64_t elem, n;
    if ((s = rd(c, 4, &elem, key)) || (s = rd(c, 8, &n, key)))
        return s;
    if (elem > PARLM_GGUF_F64)
        return parlm_error(PARLM_EFORMAT, "%s: key '%s': unknown array element type %llu",
                           c->path, key, (unsigned long long)elem);
    uint64_t esz = scalar_size((uint32_t)elem);
    uint64_t min = esz ? esz : elem == PARLM_GGUF_STRING ? 8 : 12;
    if (n > (c->size - c->pos) / min)
        return parlm_error(PARLM_EFORMAT,
                           "%s: key '%s': array of %llu %s elements does not fit in the file",
                           c->path, key, (unsigned long long)n, type_name((uint32_t)elem));
    if (esz && elem != PARLM_GGUF_BOOL) {
        c->pos += n * esz;
        return PARLM_OK;
    }
    for (uint64_t i = 0; i < n; i++)
        if ((s = skip_value(c, (uint32_t)elem, depth + 1, key)))
            return s;
    return PARLM_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* the first duplicate among n strings, or NULL */
static const char *find_duplicate(char **names, int64_t n, parlm_status *s)
{
    *s = PARLM_OK;
    if (n < 2)
        return NULL;
    char **sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted) {
        *s = parlm_error(PARLM_ENOMEM, "out of memory sorting %lld names", (long long)n);
        return NULL;
    }
    memcpy(sorted, names, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_str);
    const char *dup = NULL;
    for (int64_t i = 1; i < n && !dup; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            dup = sorted[i];
    free(sorted);
    return dup;
}

static char *dup_bytes(const uint8_t *p, uint64_t len)
{
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, p, len);
        s[len] = 0;
    }
    return s;
}

void parlm_gguf_close(parlm_gguf *g)
{
    if (!g)
        return;
    for (int64_t i = 0; g->kv && i < g->nkv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].stroff);
    }
    for (int64_t i = 0; g->t && i < g->ntensors; i++)
        free((char *)g->t[i].name);
    free(g->kv);
    free(g->t);
    if (g->map)
        munmap(g->map, g->size);
    free(g->path);
    free(g);
}

static parlm_status read_kvs(parlm_gguf *g, cursor *c)
{
    parlm_status s;
    for (int64_t i = 0; i < g->nkv; i++) {
        kv *e = &g->kv[i];
        uint64_t off, len, t;
        char what[48];
        snprintf(what, sizeof what, "the key of metadata entry %lld", (long long)i);
        if ((s = rd_str(c, GGUF_MAX_KEY, &off, &len, what)))
            return s;
        if (!(e->key = dup_bytes(c->p + off, len)))
            return parlm_error(PARLM_ENOMEM, "out of memory reading %s", g->path);
        if (strlen(e->key) != len)
            return parlm_error(PARLM_EFORMAT, "%s: %s contains a NUL byte", g->path, what);
        if ((s = rd(c, 4, &t, e->key)))
            return s;
        e->type = (uint32_t)t;
        uint64_t start = c->pos;
        if ((s = skip_value(c, e->type, 0, e->key)))
            return s;
        e->val = c->p + start;
        if (e->type == PARLM_GGUF_ARRAY) {
            e->elem = (uint32_t)le(c->p + start, 4);
            e->n = le(c->p + start + 4, 8);
            e->val = c->p + start + 12;
            if (e->elem == PARLM_GGUF_STRING) {
                /* n <= file size / 8 was checked by skip_value */
                if (!(e->stroff = malloc((size_t)(e->n ? e->n : 1) * sizeof *e->stroff)))
                    return parlm_error(PARLM_ENOMEM, "out of memory indexing key '%s' of %s",
                                       e->key, g->path);
                uint64_t p = start + 12;
                for (uint64_t k = 0; k < e->n; k++) {
                    e->stroff[k] = p;
                    p += 8 + le(c->p + p, 8);
                }
            }
        }
        if (strcmp(e->key, "general.alignment") == 0) {
            if (e->type != PARLM_GGUF_U32)
                return parlm_error(PARLM_EFORMAT, "%s: general.alignment is %s, must be uint32",
                                   g->path, type_name(e->type));
            uint32_t a = (uint32_t)le(e->val, 4);
            if (a == 0 || (a & (a - 1)))
                return parlm_error(PARLM_EFORMAT,
                                   "%s: general.alignment is %u, must be a power of two", g->path, a);
            g->align = a;
        }
    }
    char **keys = malloc((size_t)(g->nkv ? g->nkv : 1) * sizeof *keys);
    if (!keys)
        return parlm_error(PARLM_ENOMEM, "out of memory reading %s", g->path);
    for (int64_t i = 0; i < g->nkv; i++)
        keys[i] = g->kv[i].key;
    const char *dup = find_duplicate(keys, g->nkv, &s);
    if (dup)
        s = parlm_error(PARLM_EFORMAT, "%s: metadata key '%s' appears twice", g->path, dup);
    free(keys);
    return s;
}

static parlm_status read_tensor_infos(parlm_gguf *g, cursor *c)
{
    parlm_status s;
    for (int64_t i = 0; i < g->ntensors; i++) {
        parlm_gguf_tensor *t = &g->t[i];
        uint64_t off, len, v;
        char what[48];
        snprintf(what, sizeof what, "the name of tensor %lld", (long long)i);
        if ((s = rd_str(c, GGUF_MAX_NAME, &off, &len, what)))
            return s;
        if (!(t->name = dup_bytes(c->p + off, len)))
            return parlm_error(PARLM_ENOMEM, "out of memory reading %s", g->path);
        const char *nm = t->name;
        if (strlen(nm) != len)
            return parlm_error(PARLM_EFORMAT, "%s: %s contains a NUL byte", g->path, what);
        if ((s = rd(c, 4, &v, nm)))
            return s;
        if (v < 1 || v > PARLM_GGUF_MAX_DIMS)
            return parlm_error(PARLM_EFORMAT, "%s: tensor '%s' has %llu dimensions (1..%d)",
                               g->path, nm, (unsigned long long)v, PARLM_GGUF_MAX_DIMS);
        t->n_dims = (int)v;
        uint64_t count = 1;
        for (int d = 0; d < PARLM_GGUF_MAX_DIMS; d++)
            t->ne[d] = 1;
        for (int d = 0; d < t->n_dims; d++) {
            if ((s = rd(c, 8, &t->ne[d], nm)))
                return s;
            if (t->ne[d] > (uint64_t)INT64_MAX ||
                (t->ne[d] && count > (uint64_t)INT64_MAX / t->ne[d]))
                return parlm_error(PARLM_EFORMAT,
                                   "%s: tensor '%s': dimension %d (%llu) overflows its element count",
                                   g->path, nm, d, (unsigned long long)t->ne[d]);
            count *= t->ne[d];
        }
        if ((s = rd(c, 4, &v, nm)))
            return s;
        if (!parlm_wtype_name((int)(v > 1000 ? 1000 : v)))
            return parlm_error(PARLM_EUNSUPPORTED, "%s: unsupported tensor type %llu for tensor %s",
                               g->path, (unsigned long long)v, nm);
        t->type = (parlm_wtype)v;
        if ((t->type == PARLM_WT_Q8_0 || t->type == PARLM_WT_Q4_0) && t->ne[0] % PARLM_QBLOCK)
            return parlm_error(PARLM_EFORMAT,
                               "%s: tensor '%s': %s rows of %llu elements (a multiple of %d needed)",
                               g->path, nm, parlm_wtype_name(t->type),
                               (unsigned long long)t->ne[0], PARLM_QBLOCK);
        if (parlm_wtype_bytes(t->type, count, &t->size))
            return parlm_error(PARLM_EFORMAT, "%s: tensor '%s': %s", g->path, nm, parlm_last_error());
        if ((s = rd(c, 8, &t->offset, nm)))
            return s;
        if (t->offset % g->align)
            return parlm_error(PARLM_EFORMAT, "%s: tensor '%s': offset %llu is not a multiple of the alignment %u",
                               g->path, nm, (unsigned long long)t->offset, g->align);
    }
    return PARLM_OK;
}

static int cmp_offset(const void *a, const void *b)
{
    const parlm_gguf_tensor *x = *(const parlm_gguf_tensor *const *)a,
                            *y = *(const parlm_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* every tensor inside the data section, none overlapping another */
static parlm_status check_data(parlm_gguf *g)
{
    uint64_t avail = g->size - g->data_off;
    for (int64_t i = 0; i < g->ntensors; i++) {
        parlm_gguf_tensor *t = &g->t[i];
        if (t->offset > avail || t->size > avail - t->offset)
            return parlm_error(PARLM_EFORMAT,
                               "%s: tensor '%s': data [%llu, +%llu) lies past the end of the file (%llu data bytes)",
                               g->path, t->name, (unsigned long long)t->offset,
                               (unsigned long long)t->size, (unsigned long long)avail);
        t->data = g->map + g->data_off + t->offset;
    }
    if (g->ntensors < 2)
        return PARLM_OK;
    parlm_gguf_tensor **by = malloc((size_t)g->ntensors * sizeof *by);
    if (!by)
        return parlm_error(PARLM_ENOMEM, "out of memory reading %s", g->path);
    for (int64_t i = 0; i < g->ntensors; i++)
        by[i] = &g->t[i];
    qsort(by, (size_t)g->ntensors, sizeof *by, cmp_offset);
    parlm_status s = PARLM_OK;
    for (int64_t i = 1; i < g->ntensors && !s; i++)
        if (by[i - 1]->offset + by[i - 1]->size > by[i]->offset)
            s = parlm_error(PARLM_EFORMAT, "%s: the data of tensors '%s' and '%s' overlap", g->path,
                            by[i - 1]->name, by[i]->name);
    char **names = (char **)by; /* reuse: same size */
    for (int64_t i = 0; i < g->ntensors && !s; i++)
        names[i] = (char *)g->t[i].name;
    const char *dup = s ? NULL : find_duplicate(names, g->ntensors, &s);
    if (dup)
        s = parlm_error(PARLM_EFORMAT, "%s: tensor '%s' appears twice", g->path, dup);
    free(by);
    return s;
}

parlm_status parlm_gguf_open(parlm_gguf **out, const char *path)
{
    if (!out || !path)
        return parlm_error(PARLM_EINVAL, "parlm_gguf_open: null argument");
    *out = NULL;
    const uint16_t one = 1;
    if (*(const uint8_t *)&one != 1)
        return parlm_error(PARLM_EUNSUPPORTED, "%s: GGUF reading needs a little-endian host", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return parlm_error(PARLM_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return parlm_error(PARLM_EIO, "%s: not a regular file", path);
    }
    if (st.st_size < 24) {
        close(fd);
        return parlm_error(PARLM_EFORMAT, "%s: truncated: %lld bytes, a GGUF header is 24", path,
                           (long long)st.st_size);
    }
    parlm_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(path))) {
        free(g);
        close(fd);
        return parlm_error(PARLM_ENOMEM, "out of memory opening %s", path);
    }
    g->size = (uint64_t)st.st_size;
    void *map = mmap(NULL, (size_t)g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        parlm_gguf_close(g);
        return parlm_error(PARLM_EIO, "%s: cannot map: %s", path, strerror(errno));
    }
    g->map = map;
    g->align = PARLM_GGUF_DEFAULT_ALIGNMENT;
    cursor c = {g->map, 0, g->size, g->path};
    parlm_status s = PARLM_OK;
    uint64_t v = 0, nt = 0, nkv = 0;
    if (memcmp(g->map, "GGUF", 4) != 0) {
        s = parlm_error(PARLM_EFORMAT, "%s: not a GGUF file (magic is not \"GGUF\")", path);
        goto fail;
    }
    c.pos = 4;
    rd(&c, 4, &v, "version");
    rd(&c, 8, &nt, "tensor count");
    rd(&c, 8, &nkv, "metadata count");
    g->version = (uint32_t)v;
    if (v != 2 && v != 3) {
        s = parlm_error(PARLM_EFORMAT, "%s: GGUF version %llu (2 and 3 are read)", path,
                        (unsigned long long)v);
        goto fail;
    }
    /* each entry takes at least 13 bytes (key length, type, a byte), each tensor info 24 */
    if (nkv > (g->size - c.pos) / 13 || nt > (g->size - c.pos) / 24) {
        s = parlm_error(PARLM_EFORMAT, "%s: header counts %llu metadata entries and %llu tensors, more than the %llu-byte file can hold",
                        path, (unsigned long long)nkv, (unsigned long long)nt,
                        (unsigned long long)g->size);
        goto fail;
    }
    g->kv = calloc((size_t)(nkv ? nkv : 1), sizeof *g->kv);
    g->t = calloc((size_t)(nt ? nt : 1), sizeof *g->t);
    if (!g->kv || !g->t) {
        s = parlm_error(PARLM_ENOMEM, "out of memory reading %s", path);
        goto fail;
    }
    g->nkv = (int64_t)nkv;
    g->ntensors = (int64_t)nt;
    if ((s = read_kvs(g, &c)) || (s = read_tensor_infos(g, &c)))
        goto fail;
    g->data_off = c.pos + (g->align - c.pos % g->align) % g->align;
    if (g->data_off > g->size) {
        if (nt) {
            s = parlm_error(PARLM_EFORMAT, "%s: truncated before the tensor data (offset %llu)",
                            path, (unsigned long long)g->data_off);
            goto fail;
        }
        g->data_off = g->size;
    }
    if ((s = check_data(g)))
        goto fail;
    *out = g;
    return PARLM_OK;
fail:
    parlm_gguf_close(g);
    return s;
}

uint32_t parlm_gguf_version(const parlm_gguf *g) { return g->version; }
uint32_t parlm_gguf_alignment(const parlm_gguf *g) { return g->align; }
uint64_t parlm_gguf_data_offset(const parlm_gguf *g) { return g->data_off; }
int64_t parlm_gguf_num_kv(const parlm_gguf *g) { return g->nkv; }
int64_t parlm_gguf_num_tensors(const parlm_gguf *g) { return g->ntensors; }

int64_t parlm_gguf_find_kv(const parlm_gguf *g, const char *key)
{
    for (int64_t i = 0; i < g->nkv; i++)
        if (strcmp(g->kv[i].key, key) == 0)
            return i;
    return -1;
}

const char *parlm_gguf_kv_key(const parlm_gguf *g, int64_t i)
{
    return i >= 0 && i < g->nkv ? g->kv[i].key : NULL;
}

parlm_gguf_type parlm_gguf_kv_type(const parlm_gguf *g, int64_t i, parlm_gguf_type *elem, uint64_t *n)
{
    if (!g || i < 0 || i >= g->nkv)
        return (parlm_gguf_type)-1;
    const kv *e = &g->kv[i];
    if (elem)
        *elem = (parlm_gguf_type)e->elem;
    if (n)
        *n = e->type == PARLM_GGUF_ARRAY ? e->n : 1;
    return (parlm_gguf_type)e->type;
}

int64_t parlm_gguf_find_tensor(const parlm_gguf *g, const char *name)
{
    for (int64_t i = 0; i < g->ntensors; i++)
        if (strcmp(g->t[i].name, name) == 0)
            return i;
    return -1;
}

const parlm_gguf_tensor *parlm_gguf_tensor_at(const parlm_gguf *g, int64_t i)
{
    return i >= 0 && i < g->ntensors ? &g->t[i] : NULL;
}

static parlm_status lookup(const parlm_gguf *g, const char *key, const kv **e)
{
    int64_t i = g && key ? parlm_gguf_find_kv(g, key) : -1;
    if (i < 0)
        return parlm_error(PARLM_EFORMAT, "%s: metadata key '%s' is missing", g ? g->path : "?",
                           key ? key : "(null)");
    *e = &g->kv[i];
    return PARLM_OK;
}

static parlm_status wrong(const parlm_gguf *g, const kv *e, const char *want)
{
    return parlm_error(PARLM_EFORMAT, "%s: metadata key '%s' is %s, expected %s", g->path, e->key,
                       type_name(e->type), want);
}

/* integer value of e as a sign and magnitude; 0 if e is not an integer type */
static int int_value(const kv *e, int *neg, uint64_t *mag)
{
    static const int8_t sgn[] = {0, 1, 0, 1, 0, 1, -1, -1, -1, -1, 0, 1, -1};
    if (e->type > PARLM_GGUF_F64 || sgn[e->type] < 0)
        return 0;
    int n = (int)scalar_size(e->type);
    uint64_t u = le(e->val, n);
    *neg = 0;
    if (sgn[e->type] && (u >> (8 * n - 1)) & 1) {
        *neg = 1;
        u = n == 8 ? ~u + 1 : ((UINT64_C(1) << (8 * n)) - u);
    }
    *mag = u;
    return 1;
}

parlm_status parlm_gguf_get_uint(const parlm_gguf *g, const char *key, uint64_t *v)
{
    const kv *e = NULL;
    int neg;
    uint64_t mag;
    parlm_status s = lookup(g, key, &e);
    if (s)
        return s;
    if (!int_value(e, &neg, &mag))
        return wrong(g, e, "an integer");
    if (neg)
        return parlm_error(PARLM_EFORMAT, "%s: metadata key '%s' is negative", g->path, key);
    *v = mag;
    return PARLM_OK;
}

parlm_status parlm_gguf_get_int(const parlm_gguf *g, const char *key, int64_t *v)
{
    const kv *e = NULL;
    int neg;
    uint64_t mag;
    parlm_status s = lookup(g, key, &e);
    if (s)
        return s;
    if (!int_value(e, &neg, &mag))
        return wrong(g, e, "an integer");
    if (mag > (uint64_t)INT64_MAX + neg)
        return parlm_error(PARLM_EFORMAT, "%s: metadata key '%s' does not fit in int64", g->path, key);
    *v = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return PARLM_OK;
}

parlm_status parlm_gguf_get_float(const parlm_gguf *g, const char *key, double *v)
{
    const kv *e = NULL;
    parlm_status s = lookup(g, key, &e);
    if (s)
        return s;
    if (e->type == PARLM_GGUF_F32) {
        float f;
        memcpy(&f, e->val, 4);
        *v = f;
    } else if (e->type == PARLM_GGUF_F64)
        memcpy(v, e->val, 8);
    else
        return wrong(g, e, "float32 or float64");
    return PARLM_OK;
}

parlm_status parlm_gguf_get_bool(const parlm_gguf *g, const char *key, int *v)
{
    const kv *e = NULL;
    parlm_status s = lookup(g, key, &e);
    if (s)
        return s;
    if (e->type != PARLM_GGUF_BOOL)
        return wrong(g, e, "bool");
    *v = e->val[0];
    return PARLM_OK;
}

parlm_status parlm_gguf_get_str(const parlm_gguf *g, const char *key, const char **str, size_t *len)
{
    const kv *e = NULL;
    parlm_status s = lookup(g, key, &e);
    if (s)
        return s;
    if (e->type != PARLM_GGUF_STRING)
        return wrong(g, e, "string");
    *len = (size_t)le(e->val, 8);
    *str = (const char *)e->val + 8;
    return PARLM_OK;
}

parlm_status parlm_gguf_get_arr(const parlm_gguf *g, const char *key, parlm_gguf_type *elem,
                                uint64_t *n, const void **data)
{
    const kv *e = NULL;
    parlm_status s = lookup(g, key, &e);
    if (s)
        return s;
    if (e->type != PARLM_GGUF_ARRAY || !scalar_size(e->elem))
        return wrong(g, e, "an array of numbers");
    *elem = (parlm_gguf_type)e->elem;
    *n = e->n;
    *data = e->val;
    return PARLM_OK;
}

parlm_status parlm_gguf_get_arr_str(const parlm_gguf *g, const char *key, uint64_t i,
                                    const char **str, size_t *len)
{
    const kv *e = NULL;
    parlm_status s = lookup(g, key, &e);
    if (s)
        return s;
    if (e->type != PARLM_GGUF_ARRAY || e->elem != PARLM_GGUF_STRING)
        return wrong(g, e, "an array of strings");
    if (i >= e->n)
        return parlm_error(PARLM_EINVAL, "%s: key '%s' has %llu strings, asked for index %llu",
                           g->path, key, (unsigned long long)e->n, (unsigned long long)i);
    *len = (size_t)le(g->map + e->stroff[i], 8);
    *str = (const char *)g->map + e->stroff[i] + 8;
    return PARLM_OK;
}

/* ---- writer ----------------------------------------------------------------------- */

typedef struct wtensor {
    char name[GGUF_MAX_NAME + 1];
    parlm_wtype type;
    int n_dims;
    uint64_t ne[PARLM_GGUF_MAX_DIMS], size, offset;
    const void *data;
} wtensor;

struct parlm_gguf_writer {
    uint8_t *meta; /* the serialized key-value pairs */
    size_t len, cap;
    char **keys;
    int64_t nkv;
    wtensor *t;
    int64_t nt;
    uint32_t align;
};

parlm_status parlm_gguf_writer_create(parlm_gguf_writer **out)
{
    if (!out)
        return parlm_error(PARLM_EINVAL, "parlm_gguf_writer_create: null argument");
    *out = calloc(1, sizeof **out);
    if (!*out)
        return parlm_error(PARLM_ENOMEM, "out of memory");
    (*out)->align = PARLM_GGUF_DEFAULT_ALIGNMENT;
    return PARLM_OK;
}

void parlm_gguf_writer_free(parlm_gguf_writer *w)
{
    if (!w)
        return;
    for (int64_t i = 0; i < w->nkv; i++)
        free(w->keys[i]);
    free(w->keys);
    free(w->meta);
    free(w->t);
    free(w);
}

static parlm_status put(parlm_gguf_writer *w, const void *p, size_t n)
{
    if (n > w->cap - w->len) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap - w->len < n) {
            if (cap > SIZE_MAX / 2)
                return parlm_error(PARLM_ENOMEM, "GGUF metadata too large");
            cap *= 2;
        }
        uint8_t *m = realloc(w->meta, cap);
        if (!m)
            return parlm_error(PARLM_ENOMEM, "out of memory for GGUF metadata");
        w->meta = m;
        w->cap = cap;
    }
    memcpy(w->meta + w->len, p, n);
    w->len += n;
    return PARLM_OK;
}

static parlm_status put_le(parlm_gguf_writer *w, uint64_t v, int n)
{
    uint8_t b[8];
    for (int i = 0; i < n; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return put(w, b, (size_t)n);
}

static parlm_status put_str(parlm_gguf_writer *w, const char *s, size_t len)
{
    parlm_status st = put_le(w, len, 8);
    return st ? st : put(w, s, len);
}

/* starts entry key of type t; records the key after checking it is new */
static parlm_status begin_kv(parlm_gguf_writer *w, const char *key, uint32_t t)
{
    if (!w || !key)
        return parlm_error(PARLM_EINVAL, "GGUF writer: null argument");
    size_t kl = strlen(key);
    if (kl == 0 || kl > GGUF_MAX_KEY)
        return parlm_error(PARLM_EINVAL, "GGUF key '%.40s' must be 1..%d bytes", key, GGUF_MAX_KEY);
    for (int64_t i = 0; i < w->nkv; i++)
        if (strcmp(w->keys[i], key) == 0)
            return parlm_error(PARLM_EINVAL, "GGUF key '%s' set twice", key);
    char **k = realloc(w->keys, (size_t)(w->nkv + 1) * sizeof *k);
    if (!k)
        return parlm_error(PARLM_ENOMEM, "out of memory");
    w->keys = k;
    if (!(k[w->nkv] = strdup(key)))
        return parlm_error(PARLM_ENOMEM, "out of memory");
    w->nkv++;
    parlm_status s = put_str(w, key, kl);
    return s ? s : put_le(w, t, 4);
}

static parlm_status put_scalar(parlm_gguf_writer *w, uint32_t t, const void *v)
{
    uint64_t sz = scalar_size(t), u = 0;
    const uint8_t *b = v;
    for (uint64_t i = 0; i < sz; i++) /* host little-endian bytes, as stored */
        u |= (uint64_t)b[i] << (8 * i);
    return put_le(w, u, (int)sz);
}

parlm_status parlm_gguf_set(parlm_gguf_writer *w, const char *key, parlm_gguf_type t, const void *v)
{
    if (!scalar_size(t) || !v)
        return parlm_error(PARLM_EINVAL, "parlm_gguf_set: key '%s': type %d is not a scalar",
                           key ? key : "(null)", (int)t);
    if (t == PARLM_GGUF_BOOL && *(const uint8_t *)v > 1)
        return parlm_error(PARLM_EINVAL, "GGUF key '%s': bool must be 0 or 1", key);
    if (key && strcmp(key, "general.alignment") == 0) {
        uint32_t a;
        memcpy(&a, v, 4);
        if (t != PARLM_GGUF_U32 || a == 0 || (a & (a - 1)))
            return parlm_error(PARLM_EINVAL, "general.alignment must be a uint32 power of two");
        w->align = a;
    }
    parlm_status s = begin_kv(w, key, t);
    return s ? s : put_scalar(w, t, v);
}

parlm_status parlm_gguf_set_str(parlm_gguf_writer *w, const char *key, const char *str, size_t len)
{
    if (!str)
        return parlm_error(PARLM_EINVAL, "parlm_gguf_set_str: null string");
    parlm_status s = begin_kv(w, key, PARLM_GGUF_STRING);
    return s ? s : put_str(w, str, len);
}

parlm_status parlm_gguf_set_arr(parlm_gguf_writer *w, const char *key, parlm_gguf_type elem,
                                uint64_t n, const void *data)
{
    uint64_t sz = scalar_size(elem);
    if (!sz || (n && !data))
        return parlm_error(PARLM_EINVAL, "parlm_gguf_set_arr: key '%s': bad element type or data",
                           key ? key : "(null)");
    parlm_status s = begin_kv(w, key, PARLM_GGUF_ARRAY);
    if (s || (s = put_le(w, elem, 4)) || (s = put_le(w, n, 8)))
        return s;
    for (uint64_t i = 0; i < n && !s; i++) {
        if (elem == PARLM_GGUF_BOOL && ((const uint8_t *)data)[i] > 1)
            return parlm_error(PARLM_EINVAL, "GGUF key '%s': bool must be 0 or 1", key);
        s = put_scalar(w, elem, (const uint8_t *)data + i * sz);
    }
    return s;
}

parlm_status parlm_gguf_set_arr_str(parlm_gguf_writer *w, const char *key, uint64_t n,
                                    const char *const *str, const size_t *lens)
{
    if (n && !str)
        return parlm_error(PARLM_EINVAL, "parlm_gguf_set_arr_str: null strings");
    parlm_status s = begin_kv(w, key, PARLM_GGUF_ARRAY);
    if (s || (s = put_le(w, PARLM_GGUF_STRING, 4)) || (s = put_le(w, n, 8)))
        return s;
    for (uint64_t i = 0; i < n && !s; i++)
        s = put_str(w, str[i], lens ? lens[i] : strlen(str[i]));
    return s;
}

parlm_status parlm_gguf_add_tensor(parlm_gguf_writer *w, const char *name, parlm_wtype type,
                                   int n_dims, const uint64_t *ne, const void *data)
{
    if (!w || !name || !ne || !data)
        return parlm_error(PARLM_EINVAL, "parlm_gguf_add_tensor: null argument");
    if (strlen(name) == 0 || strlen(name) > GGUF_MAX_NAME)
        return parlm_error(PARLM_EINVAL, "GGUF tensor name '%.70s' must be 1..%d bytes", name,
                           GGUF_MAX_NAME);
    if (n_dims < 1 || n_dims > PARLM_GGUF_MAX_DIMS)
        return parlm_error(PARLM_EINVAL, "tensor '%s': %d dimensions (1..%d)", name, n_dims,
                           PARLM_GGUF_MAX_DIMS);
    for (int64_t i = 0; i < w->nt; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return parlm_error(PARLM_EINVAL, "GGUF tensor '%s' added twice", name);
    wtensor t = {.type = type, .n_dims = n_dims, .data = data};
    strcpy(t.name, name);
    uint64_t count = 1;
    for (int d = 0; d < PARLM_GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] > (uint64_t)INT64_MAX || (t.ne[d] && count > (uint64_t)INT64_MAX / t.ne[d]))
            return parlm_error(PARLM_EINVAL, "tensor '%s': element count overflows", name);
        count *= t.ne[d];
    }
    if ((type == PARLM_WT_Q8_0 || type == PARLM_WT_Q4_0) && t.ne[0] % PARLM_QBLOCK)
        return parlm_error(PARLM_EINVAL, "tensor '%s': %s rows must be a multiple of %d, got %llu",
                           name, parlm_wtype_name(type), PARLM_QBLOCK, (unsigned long long)t.ne[0]);
    parlm_status s = parlm_wtype_bytes(type, count, &t.size);
    if (s)
        return parlm_error(s, "tensor '%s': %s", name, parlm_last_error());
    wtensor *nt = realloc(w->t, (size_t)(w->nt + 1) * sizeof *nt);
    if (!nt)
        return parlm_error(PARLM_ENOMEM, "out of memory");
    w->t = nt;
    w->t[w->nt++] = t;
    return PARLM_OK;
}

static int put_file(FILE *f, uint64_t v, int n)
{
    uint8_t b[8];
    for (int i = 0; i < n; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return fwrite(b, 1, (size_t)n, f) == (size_t)n;
}

static int pad_file(FILE *f, uint64_t *pos, uint32_t align)
{
    static const uint8_t zero[256];
    uint64_t n = (align - *pos % align) % align;
    *pos += n;
    while (n) {
        size_t k = n > sizeof zero ? sizeof zero : (size_t)n;
        if (fwrite(zero, 1, k, f) != k)
            return 0;
        n -= k;
    }
    return 1;
}

static parlm_status write_all(FILE *f, void *arg)
{
    parlm_gguf_writer *w = arg;
    int ok = fwrite("GGUF", 1, 4, f) == 4 && put_file(f, 3, 4) && put_file(f, (uint64_t)w->nt, 8) &&
             put_file(f, (uint64_t)w->nkv, 8) && fwrite(w->meta, 1, w->len, f) == w->len;
    uint64_t pos = 24 + w->len, off = 0;
    for (int64_t i = 0; ok && i < w->nt; i++) {
        wtensor *t = &w->t[i];
        size_t nl = strlen(t->name);
        t->offset = off;
        ok = put_file(f, nl, 8) && fwrite(t->name, 1, nl, f) == nl && put_file(f, (uint64_t)t->n_dims, 4);
        for (int d = 0; ok && d < t->n_dims; d++)
            ok = put_file(f, t->ne[d], 8);
        ok = ok && put_file(f, (uint64_t)t->type, 4) && put_file(f, off, 8);
        pos += 8 + nl + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
        off += t->size + (w->align - t->size % w->align) % w->align;
    }
    ok = ok && pad_file(f, &pos, w->align);
    for (int64_t i = 0; ok && i < w->nt; i++) {
        ok = fwrite(w->t[i].data, 1, (size_t)w->t[i].size, f) == w->t[i].size;
        pos += w->t[i].size;
        ok = ok && pad_file(f, &pos, w->align);
    }
    return ok ? PARLM_OK : parlm_error(PARLM_EIO, "write failed: %s", strerror(errno));
}

parlm_status parlm_gguf_write(parlm_gguf_writer *w, const char *path)
{
    if (!w || !path)
        return parlm_error(PARLM_EINVAL, "parlm_gguf_write: null argument");
    return parlm_write_file_atomic(path, write_all, w);
}
