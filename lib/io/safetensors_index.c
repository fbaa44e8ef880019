/* lib/io/safetensors_index.c — the files of a (sharded) safetensors model. The one idea:
 * the index is as untrusted as the shards, so every value of its weight_map must be a
 * plain file name in its directory, every shard is opened (and so checked) before use,
 * and index and shards must agree exactly: a tensor the index maps to a shard that lacks
 * it, a shard tensor the index does not list, or one two shards hold, names the shard. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../base/error.h"
#include "file.h"
#include "parlm/tensor.h"
#include "safetensors_index.h"

#define ST_MAX_SHARDS 100000

/* dir of path with its trailing '/' ("" for a bare name) */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
    char *p = malloc(dl + 1);
    if (p) {
        memcpy(p, path, dl);
        p[dl] = 0;
    }
    return p;
}

void parlm_st_set_close(parlm_st_set *src)
{
    for (int i = 0; i < src->n; i++) {
        parlm_safetensors_close(src->st[i]);
        free(src->files[i]);
    }
    free(src->st);
    free(src->files);
    json_decref(src->root);
    free(src->index);
    free(src->dir);
}

/* a shard's name: a plain file in the index's directory */
static int plain_name(const char *f)
{
    size_t n = strlen(f);
    return n > 0 && n < 256 && !strchr(f, '/') && !strchr(f, '\\') && strcmp(f, ".") != 0 &&
           strcmp(f, "..") != 0;
}

static int shard_of(const parlm_st_set *src, const char *file)
{
    for (int i = 0; i < src->n; i++)
        if (strcmp(src->files[i], file) == 0)
            return i;
    return -1;
}

/* the index: every value of weight_map a shard file; every shard opened (and so checked);
 * every tensor the index maps in its shard, every tensor of a shard mapped to it */
static parlm_status open_index(parlm_st_set *src)
{
    char *text = NULL;
    size_t len;
    const char *ip = src->index;
    parlm_status s = parlm_read_file(ip, (size_t)64 << 20, &text, &len);
    if (s)
        return s;
    json_error_t err;
    src->root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    parlm_free(text);
    if (!src->root || !json_is_object(src->root))
        return parlm_error(PARLM_EFORMAT, "%s: %s", ip, src->root ? "not a JSON object" : err.text);
    json_t *meta = json_object_get(src->root, "metadata"), *ts = json_object_get(meta, "total_size");
    if (meta && !json_is_object(meta) && !json_is_null(meta))
        return parlm_error(PARLM_EFORMAT, "%s: \"metadata\" is not an object", ip);
    if (ts && !(json_is_integer(ts) && json_integer_value(ts) >= 0))
        return parlm_error(PARLM_EFORMAT, "%s: \"metadata.total_size\" is not an integer >= 0", ip);
    src->map = json_object_get(src->root, "weight_map");
    if (!json_is_object(src->map) || json_object_size(src->map) == 0)
        return parlm_error(PARLM_EFORMAT, "%s: \"weight_map\" missing, not an object or empty", ip);
    size_t cap = json_object_size(src->map) < ST_MAX_SHARDS ? json_object_size(src->map) : ST_MAX_SHARDS;
    if (!(src->files = calloc(cap, sizeof *src->files)) || !(src->st = calloc(cap, sizeof *src->st)))
        return parlm_error(PARLM_ENOMEM, "out of memory reading %s", ip);
    const char *name;
    json_t *v;
    json_object_foreach(src->map, name, v) {
        const char *f = json_string_value(v);
        if (!f || !plain_name(f))
            return parlm_error(PARLM_EFORMAT, "%s: \"weight_map\": \"%.80s\" is not a file name "
                               "in the index's directory", ip, name);
        if (shard_of(src, f) >= 0)
            continue;
        if ((size_t)src->n == cap)
            return parlm_error(PARLM_EFORMAT, "%s: \"weight_map\" names over %zu files", ip, cap);
        char *path = malloc(strlen(src->dir) + strlen(f) + 1);
        if (!path || !(src->files[src->n] = strdup(f))) {
            free(path);
            return parlm_error(PARLM_ENOMEM, "out of memory reading %s", ip);
        }
        strcat(strcpy(path, src->dir), f);
        s = parlm_safetensors_open(&src->st[src->n], path); /* its errors name the shard */
        free(path);
        src->n += s == PARLM_OK;
        if (s) {
            free(src->files[src->n]);
            src->files[src->n] = NULL;
            return s;
        }
    }
    json_object_foreach(src->map, name, v) {
        int k = shard_of(src, json_string_value(v));
        if (parlm_safetensors_find(src->st[k], name) < 0)
            return parlm_error(PARLM_EFORMAT, "%s%s: tensor %.80s is missing (%s maps it there)",
                               src->dir, src->files[k], name, ip);
    }
    for (int k = 0; k < src->n; k++)
        for (int64_t i = 0; i < parlm_safetensors_num_tensors(src->st[k]); i++) {
            const char *t = parlm_safetensors_tensor_at(src->st[k], i)->name;
            const char *f = json_string_value(json_object_get(src->map, t));
            if (!f)
                return parlm_error(PARLM_EFORMAT, "%s%s: tensor %.80s is not in %s's weight_map",
                                   src->dir, src->files[k], t, ip);
            if (strcmp(f, src->files[k]) != 0)
                return parlm_error(PARLM_EFORMAT, "%s%s: tensor %.80s is duplicated (%s maps it to %s)",
                                   src->dir, src->files[k], t, ip, f);
        }
    return PARLM_OK;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* path: a .safetensors file, an index (*.json), or a directory holding
 * model.safetensors.index.json or model.safetensors */
parlm_status parlm_st_set_open(parlm_st_set *src, const char *path)
{
    struct stat sb;
    char *file = NULL;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        size_t n = strlen(path);
        if (!(src->dir = malloc(n + 2)))
            return parlm_error(PARLM_ENOMEM, "out of memory");
        memcpy(src->dir, path, n + 1);
        if (n && path[n - 1] != '/')
            src->dir[n] = '/', src->dir[n + 1] = 0;
        if (!(src->index = malloc(n + 2 + sizeof PARLM_ST_INDEX)))
            return parlm_error(PARLM_ENOMEM, "out of memory");
        strcat(strcpy(src->index, src->dir), PARLM_ST_INDEX);
        if (stat(src->index, &sb) != 0) {
            free(src->index);
            src->index = NULL;
            if (!(file = malloc(n + 2 + sizeof "model.safetensors")))
                return parlm_error(PARLM_ENOMEM, "out of memory");
            strcat(strcpy(file, src->dir), "model.safetensors");
        }
    } else {
        if (!(src->dir = dir_of(path)))
            return parlm_error(PARLM_ENOMEM, "out of memory");
        if (ends_with(path, ".json")) {
            if (!(src->index = strdup(path)))
                return parlm_error(PARLM_ENOMEM, "out of memory");
        } else if (!(file = strdup(path)))
            return parlm_error(PARLM_ENOMEM, "out of memory");
    }
    if (src->index)
        return open_index(src);
    src->files = calloc(1, sizeof *src->files);
    src->st = calloc(1, sizeof *src->st);
    if (!src->files || !src->st) {
        free(file);
        return parlm_error(PARLM_ENOMEM, "out of memory");
    }
    src->files[0] = file;
    parlm_status s = parlm_safetensors_open(&src->st[0], file);
    src->n = s == PARLM_OK;
    if (s) {
        free(file);
        src->files[0] = NULL;
    }
    return s;
}

/* the tensor called name, and the file holding it */
const parlm_st_tensor *parlm_st_set_find(const parlm_st_set *src, const char *name, int *file)
{
    int k = 0;
    if (src->map) {
        const char *f = json_string_value(json_object_get(src->map, name));
        if (!f)
            return NULL;
        k = shard_of(src, f);
    }
    int64_t i = parlm_safetensors_find(src->st[k], name);
    *file = k;
    return i < 0 ? NULL : parlm_safetensors_tensor_at(src->st[k], i);
}
