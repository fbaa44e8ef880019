/* lib/io/safetensors_index.h — internal: the safetensors files of one model, one file or
 * the shards a model.safetensors.index.json names, looked up by tensor name. Opening an
 * index opens and checks every shard and the index against them. */
#ifndef PARLM_IO_SAFETENSORS_INDEX_H
#define PARLM_IO_SAFETENSORS_INDEX_H
#include <jansson.h>

#include "parlm/safetensors.h"

#define PARLM_ST_INDEX "model.safetensors.index.json"

/* One safetensors file, or the shards an index names, with the index's weight_map. */
typedef struct parlm_st_set {
    char *dir;    /* with its '/', or "" */
    char *index;  /* the index's path, or NULL */
    json_t *root; /* the index */
    json_t *map;  /* its weight_map (borrowed from root) */
    int n;
    char **files; /* shard names as the index spells them */
    parlm_safetensors **st;
} parlm_st_set;

/* path: a .safetensors file, an index (*.json), or a directory holding
 * model.safetensors.index.json or model.safetensors. On error, close set all the same. */
parlm_status parlm_st_set_open(parlm_st_set *set, const char *path);
void parlm_st_set_close(parlm_st_set *set);
/* the tensor called name (NULL if none) and in *file the index of the file holding it */
const parlm_st_tensor *parlm_st_set_find(const parlm_st_set *set, const char *name, int *file);

#endif
