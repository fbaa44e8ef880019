/* lib/io/safetensors.c — safetensors reader (mapped; JSON header parsed by Jansson) and
 * writer (atomic). The one idea: the header is untrusted, so its length is checked
 * against the file before parsing, and the tensors' data_offsets must tile the data
 * section exactly, as Hugging Face's own reader demands: sorted by offset, each begins
 * where the previous ends, the last ends at the end of the file, each as long as its
 * dtype and shape say. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../base/error.h"
#include "file.h"
#include "parlm/safetensors.h"

#define ST_MAX_HEADER (100u << 20) /* Hugging Face's limit on the JSON header */

struct parlm_safetensors {
    char *path;
    uint8_t *map;
    uint64_t size, data_off;
    int64_t n;
    parlm_st_tensor *t;
    char **meta_keys, **meta_vals;
    int64_t nmeta;
};

static const char *st_dtype_name(parlm_wtype t)
{
    return t == PARLM_WT_F32 ? "F32" : t == PARLM_WT_F16 ? "F16" : t == PARLM_WT_BF16 ? "BF16" : NULL;
}

static uint64_t elem_size(parlm_wtype t)
{
    return t == PARLM_WT_F32 ? 4 : 2;
}

void parlm_safetensors_close(parlm_safetensors *st)
{
    if (!st)
        return;
    for (int64_t i = 0; st->t && i < st->n; i++)
        free((char *)st->t[i].name);
    for (int64_t i = 0; i < st->nmeta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_vals[i]);
    }
    free(st->meta_keys);
    free(st->meta_vals);
    free(st->t);
    if (st->map)
        munmap(st->map, st->size);
    free(st->path);
    free(st);
}

static parlm_status read_meta(parlm_safetensors *st, json_t *meta)
{
    if (!json_is_object(meta))
        return parlm_error(PARLM_EFORMAT, "%s: __metadata__ is not an object", st->path);
    size_t n = json_object_size(meta);
    st->meta_keys = calloc(n ? n : 1, sizeof(char *));
    st->meta_vals = calloc(n ? n : 1, sizeof(char *));
    if (!st->meta_keys || !st->meta_vals)
        return parlm_error(PARLM_ENOMEM, "out of memory reading %s", st->path);
    const char *key;
    json_t *v;
    json_object_foreach(meta, key, v) {
        if (!json_is_string(v))
            return parlm_error(PARLM_EFORMAT, "%s: __metadata__ '%s' is not a string", st->path, key);
        st->meta_keys[st->nmeta] = strdup(key);
        st->meta_vals[st->nmeta] = strdup(json_string_value(v));
        if (!st->meta_keys[st->nmeta++] || !st->meta_vals[st->nmeta - 1])
            return parlm_error(PARLM_ENOMEM, "out of memory reading %s", st->path);
    }
    return PARLM_OK;
}

/* one "name": {dtype, shape, data_offsets} entry into t */
static parlm_status read_entry(parlm_safetensors *st, const char *name, json_t *v, parlm_st_tensor *t)
{
    const char *p = st->path;
    if (!(t->name = strdup(name)))
        return parlm_error(PARLM_ENOMEM, "out of memory reading %s", p);
    if (!json_is_object(v))
        return parlm_error(PARLM_EFORMAT, "%s: tensor '%s': not an object", p, name);
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
           *off = json_object_get(v, "data_offsets");
    if (!json_is_string(dt))
        return parlm_error(PARLM_EFORMAT, "%s: tensor '%s': dtype missing or not a string", p, name);
    const char *d = json_string_value(dt);
    if (strcmp(d, "F32") == 0)
        t->type = PARLM_WT_F32;
    else if (strcmp(d, "F16") == 0)
        t->type = PARLM_WT_F16;
    else if (strcmp(d, "BF16") == 0)
        t->type = PARLM_WT_BF16;
    else
        return parlm_error(PARLM_EUNSUPPORTED, "%s: unsupported dtype %.20s for tensor %s", p, d, name);
    if (!json_is_array(sh) || json_array_size(sh) > PARLM_ST_MAX_DIMS)
        return parlm_error(PARLM_EFORMAT, "%s: tensor '%s': shape missing or over %d dimensions",
                           p, name, PARLM_ST_MAX_DIMS);
    t->n_dims = (int)json_array_size(sh);
    uint64_t count = 1;
    for (int k = 0; k < t->n_dims; k++) {
        json_t *e = json_array_get(sh, (size_t)k);
        if (!json_is_integer(e) || json_integer_value(e) < 0)
            return parlm_error(PARLM_EFORMAT, "%s: tensor '%s': shape[%d] is not an integer >= 0", p, name, k);
        t->shape[k] = (uint64_t)json_integer_value(e);
        if (t->shape[k] && count > (UINT64_MAX / 4) / t->shape[k])
            return parlm_error(PARLM_EFORMAT, "%s: tensor '%s': shape overflows", p, name);
        count *= t->shape[k];
    }
    if (!json_is_array(off) || json_array_size(off) != 2 ||
        !json_is_integer(json_array_get(off, 0)) || !json_is_integer(json_array_get(off, 1)))
        return parlm_error(PARLM_EFORMAT, "%s: tensor '%s': data_offsets is not [begin, end]", p, name);
    json_int_t b = json_integer_value(json_array_get(off, 0)), e = json_integer_value(json_array_get(off, 1));
    if (b < 0 || e < b)
        return parlm_error(PARLM_EFORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] invalid", p,
                           name, (long long)b, (long long)e);
    t->offset = (uint64_t)b;
    t->size = (uint64_t)(e - b);
    if (t->size != count * elem_size(t->type))
        return parlm_error(PARLM_EFORMAT, "%s: tensor '%s': data_offsets span %llu bytes, its %s shape needs %llu",
                           p, name, (unsigned long long)t->size, d, (unsigned long long)(count * elem_size(t->type)));
    return PARLM_OK;
}

static int cmp_off(const void *a, const void *b)
{
    const parlm_st_tensor *x = *(const parlm_st_tensor *const *)a, *y = *(const parlm_st_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset ? 1 : (x->size > y->size) - (x->size < y->size);
}

/* the tensors tile [0, data size) exactly */
static parlm_status check_tiling(parlm_safetensors *st)
{
    uint64_t avail = st->size - st->data_off;
    parlm_st_tensor **by = malloc((size_t)(st->n ? st->n : 1) * sizeof *by);
    if (!by)
        return parlm_error(PARLM_ENOMEM, "out of memory reading %s", st->path);
    for (int64_t i = 0; i < st->n; i++)
        by[i] = &st->t[i];
    qsort(by, (size_t)st->n, sizeof *by, cmp_off);
    uint64_t end = 0;
    parlm_status s = PARLM_OK;
    for (int64_t i = 0; i < st->n && !s; i++) {
        if (by[i]->offset != end)
            s = parlm_error(PARLM_EFORMAT, "%s: tensor '%s' starts at data byte %llu, expected %llu (tensors must be contiguous, not overlapping)",
                            st->path, by[i]->name, (unsigned long long)by[i]->offset, (unsigned long long)end);
        else if (by[i]->size > avail - end)
            s = parlm_error(PARLM_EFORMAT, "%s: tensor '%s' ends past the end of the file (%llu data bytes)",
                            st->path, by[i]->name, (unsigned long long)avail);
        else
            end += by[i]->size;
    }
    if (!s && end != avail)
        s = parlm_error(PARLM_EFORMAT, "%s: the tensors cover %llu of the %llu data bytes", st->path,
                        (unsigned long long)end, (unsigned long long)avail);
    for (int64_t i = 0; !s && i < st->n; i++)
        st->t[i].data = st->map + st->data_off + st->t[i].offset;
    free(by);
    return s;
}

parlm_status parlm_safetensors_open(parlm_safetensors **out, const char *path)
{
    if (!out || !path)
        return parlm_error(PARLM_EINVAL, "parlm_safetensors_open: null argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return parlm_error(PARLM_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return parlm_error(PARLM_EIO, "%s: not a regular file", path);
    }
    if (sb.st_size < 8) {
        close(fd);
        return parlm_error(PARLM_EFORMAT, "%s: truncated: %lld bytes, the header length alone is 8",
                           path, (long long)sb.st_size);
    }
    parlm_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        close(fd);
        return parlm_error(PARLM_ENOMEM, "out of memory opening %s", path);
    }
    st->size = (uint64_t)sb.st_size;
    void *map = mmap(NULL, (size_t)st->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        parlm_safetensors_close(st);
        return parlm_error(PARLM_EIO, "%s: cannot map: %s", path, strerror(errno));
    }
    st->map = map;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | st->map[i];
    parlm_status s = PARLM_OK;
    json_t *root = NULL;
    if (hl > st->size - 8 || hl > ST_MAX_HEADER) {
        s = parlm_error(PARLM_EFORMAT, "%s: header length %llu exceeds the file (%llu bytes) or the 100 MB limit",
                        path, (unsigned long long)hl, (unsigned long long)st->size);
        goto done;
    }
    st->data_off = 8 + hl;
    json_error_t err;
    root = json_loadb((const char *)st->map + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        s = parlm_error(PARLM_EFORMAT, "%s: header JSON: %s (column %d)", path, err.text, err.column);
        goto done;
    }
    if (!json_is_object(root)) {
        s = parlm_error(PARLM_EFORMAT, "%s: header JSON is not an object", path);
        goto done;
    }
    size_t n = json_object_size(root);
    if (!(st->t = calloc(n ? n : 1, sizeof *st->t))) {
        s = parlm_error(PARLM_ENOMEM, "out of memory reading %s", path);
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0)
            s = read_meta(st, v);
        else
            s = read_entry(st, key, v, &st->t[st->n++]);
        if (s)
            goto done;
    }
    s = check_tiling(st);
done:
    json_decref(root);
    if (s)
        parlm_safetensors_close(st);
    else
        *out = st;
    return s;
}

int64_t parlm_safetensors_num_tensors(const parlm_safetensors *st) { return st->n; }

int64_t parlm_safetensors_find(const parlm_safetensors *st, const char *name)
{
    for (int64_t i = 0; i < st->n; i++)
        if (strcmp(st->t[i].name, name) == 0)
            return i;
    return -1;
}

const parlm_st_tensor *parlm_safetensors_tensor_at(const parlm_safetensors *st, int64_t i)
{
    return i >= 0 && i < st->n ? &st->t[i] : NULL;
}

const char *parlm_safetensors_meta(const parlm_safetensors *st, const char *key)
{
    for (int64_t i = 0; i < st->nmeta; i++)
        if (strcmp(st->meta_keys[i], key) == 0)
            return st->meta_vals[i];
    return NULL;
}

/* ---- writer ----------------------------------------------------------------------- */

struct parlm_safetensors_writer {
    json_t *meta;
    parlm_st_tensor *t;
    int64_t n;
    char *header; /* built by write */
    size_t header_len;
};

parlm_status parlm_safetensors_writer_create(parlm_safetensors_writer **out)
{
    if (!out)
        return parlm_error(PARLM_EINVAL, "parlm_safetensors_writer_create: null argument");
    *out = calloc(1, sizeof **out);
    if (!*out || !((*out)->meta = json_object())) {
        free(*out);
        *out = NULL;
        return parlm_error(PARLM_ENOMEM, "out of memory");
    }
    return PARLM_OK;
}

void parlm_safetensors_writer_free(parlm_safetensors_writer *w)
{
    if (!w)
        return;
    for (int64_t i = 0; i < w->n; i++)
        free((char *)w->t[i].name);
    free(w->t);
    json_decref(w->meta);
    free(w->header);
    free(w);
}

parlm_status parlm_safetensors_set_meta(parlm_safetensors_writer *w, const char *key, const char *value)
{
    if (!w || !key || !value)
        return parlm_error(PARLM_EINVAL, "parlm_safetensors_set_meta: null argument");
    json_t *s = json_string(value);
    if (!s || json_object_set_new(w->meta, key, s) != 0)
        return parlm_error(PARLM_EINVAL, "safetensors metadata '%.40s': not valid UTF-8", key);
    return PARLM_OK;
}

parlm_status parlm_safetensors_add(parlm_safetensors_writer *w, const char *name, parlm_wtype type,
                                   int n_dims, const uint64_t *shape, const void *data)
{
    if (!w || !name || (n_dims && !shape) || !data)
        return parlm_error(PARLM_EINVAL, "parlm_safetensors_add: null argument");
    if (!st_dtype_name(type))
        return parlm_error(PARLM_EINVAL, "tensor '%s': safetensors stores F32, F16 or BF16, not %s",
                           name, parlm_wtype_name(type) ? parlm_wtype_name(type) : "?");
    if (n_dims < 0 || n_dims > PARLM_ST_MAX_DIMS || strcmp(name, "__metadata__") == 0 || !*name)
        return parlm_error(PARLM_EINVAL, "tensor '%s': bad name or %d dimensions", name, n_dims);
    for (int64_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return parlm_error(PARLM_EINVAL, "safetensors tensor '%s' added twice", name);
    parlm_st_tensor t = {.type = type, .n_dims = n_dims, .data = data};
    uint64_t count = 1;
    for (int k = 0; k < n_dims; k++) {
        t.shape[k] = shape[k];
        if (shape[k] > (uint64_t)INT64_MAX / 4 || (shape[k] && count > ((uint64_t)INT64_MAX / 4) / shape[k]))
            return parlm_error(PARLM_EINVAL, "tensor '%s': size overflows", name);
        count *= shape[k];
    }
    t.size = count * elem_size(type);
    parlm_st_tensor *nt = realloc(w->t, (size_t)(w->n + 1) * sizeof *nt);
    if (!nt)
        return parlm_error(PARLM_ENOMEM, "out of memory");
    w->t = nt;
    if (!(t.name = strdup(name)))
        return parlm_error(PARLM_ENOMEM, "out of memory");
    w->t[w->n++] = t;
    return PARLM_OK;
}

static parlm_status st_write(FILE *f, void *arg)
{
    parlm_safetensors_writer *w = arg;
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)w->header_len >> (8 * i));
    int ok = fwrite(len, 1, 8, f) == 8 && fwrite(w->header, 1, w->header_len, f) == w->header_len;
    /* data in offset order: 4-byte types first, so every tensor stays aligned */
    for (uint64_t es = 4; ok && es >= 2; es -= 2)
        for (int64_t i = 0; ok && i < w->n; i++)
            if (elem_size(w->t[i].type) == es)
                ok = fwrite(w->t[i].data, 1, (size_t)w->t[i].size, f) == w->t[i].size;
    return ok ? PARLM_OK : parlm_error(PARLM_EIO, "write failed: %s", strerror(errno));
}

parlm_status parlm_safetensors_write(parlm_safetensors_writer *w, const char *path)
{
    if (!w || !path)
        return parlm_error(PARLM_EINVAL, "parlm_safetensors_write: null argument");
    json_t *root = json_object();
    parlm_status s = PARLM_OK;
    if (!root)
        return parlm_error(PARLM_ENOMEM, "out of memory");
    if (json_object_size(w->meta))
        json_object_set(root, "__metadata__", w->meta);
    uint64_t off = 0;
    for (uint64_t es = 4; es >= 2; es -= 2)
        for (int64_t i = 0; i < w->n; i++) {
            parlm_st_tensor *t = &w->t[i];
            if (elem_size(t->type) != es)
                continue;
            json_t *e = json_object(), *sh = json_array(), *o = json_array();
            int bad = !e || !sh || !o;
            for (int k = 0; !bad && k < t->n_dims; k++)
                bad = json_array_append_new(sh, json_integer((json_int_t)t->shape[k])) != 0;
            bad = bad || json_array_append_new(o, json_integer((json_int_t)off)) != 0 ||
                  json_array_append_new(o, json_integer((json_int_t)(off + t->size))) != 0 ||
                  json_object_set_new(e, "dtype", json_string(st_dtype_name(t->type))) != 0 ||
                  json_object_set_new(e, "shape", sh) != 0 || json_object_set_new(e, "data_offsets", o) != 0 ||
                  json_object_set_new(root, t->name, e) != 0;
            if (bad) {
                json_decref(root);
                return parlm_error(PARLM_EINVAL, "cannot add tensor '%.60s' to the safetensors header (out of memory, or a name that is not UTF-8)", t->name);
            }
            off += t->size;
        }
    char *js = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!js)
        return parlm_error(PARLM_ENOMEM, "out of memory building the safetensors header");
    size_t n = strlen(js), padded = (n + 7) / 8 * 8; /* spaces keep the data 8-byte aligned */
    free(w->header);
    if (!(w->header = malloc(padded))) {
        free(js);
        return parlm_error(PARLM_ENOMEM, "out of memory");
    }
    memcpy(w->header, js, n);
    memset(w->header + n, ' ', padded - n);
    w->header_len = padded;
    free(js);
    s = parlm_write_file_atomic(path, st_write, w);
    return s;
}
