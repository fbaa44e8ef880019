/* parlm/safetensors.h — Hugging Face safetensors files: an 8-byte little-endian header
 * length, a JSON header ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
 * "__metadata__": {string: string}}) and the tensor bytes, row-major. The reader maps the
 * file; the header is parsed with Jansson and every offset checked (the tensors must tile
 * the data exactly: contiguous, non-overlapping, inside the file) before anything is used.
 * Tensor types: F32, F16, BF16 (others: "unsupported dtype"). Writing is atomic. */
#ifndef PARLM_SAFETENSORS_H
#define PARLM_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "quant.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PARLM_ST_MAX_DIMS 8

typedef struct parlm_safetensors parlm_safetensors;

typedef struct parlm_st_tensor {
    const char *name;
    parlm_wtype type; /* F32, F16 or BF16 */
    int n_dims;
    uint64_t shape[PARLM_ST_MAX_DIMS]; /* row-major: shape[n_dims-1] is contiguous */
    uint64_t offset, size;             /* bytes, relative to the data section */
    const void *data;                  /* in the mapping */
} parlm_st_tensor;

PARLM_API parlm_status parlm_safetensors_open(parlm_safetensors **out, const char *path);
PARLM_API void parlm_safetensors_close(parlm_safetensors *st);
PARLM_API int64_t parlm_safetensors_num_tensors(const parlm_safetensors *st);
PARLM_API int64_t parlm_safetensors_find(const parlm_safetensors *st, const char *name);
PARLM_API const parlm_st_tensor *parlm_safetensors_tensor_at(const parlm_safetensors *st,
                                                            int64_t i);
/* The __metadata__ value of key, or NULL. */
PARLM_API const char *parlm_safetensors_meta(const parlm_safetensors *st, const char *key);

typedef struct parlm_safetensors_writer parlm_safetensors_writer;
PARLM_API parlm_status parlm_safetensors_writer_create(parlm_safetensors_writer **out);
PARLM_API void parlm_safetensors_writer_free(parlm_safetensors_writer *w);
PARLM_API parlm_status parlm_safetensors_set_meta(parlm_safetensors_writer *w, const char *key,
                                                  const char *value);
/* data (borrowed until parlm_safetensors_write returns) holds shape's elements of type
 * (F32, F16 or BF16), row-major. Names are unique and not "__metadata__". */
PARLM_API parlm_status parlm_safetensors_add(parlm_safetensors_writer *w, const char *name,
                                             parlm_wtype type, int n_dims, const uint64_t *shape,
                                             const void *data);
PARLM_API parlm_status parlm_safetensors_write(parlm_safetensors_writer *w, const char *path);

/* GPT-2 in Hugging Face's layout (GPT2LMHeadModel): wte, wpe, h.N.ln_1, h.N.attn.c_attn,
 * h.N.attn.c_proj, h.N.ln_2, h.N.mlp.c_fc, h.N.mlp.c_proj, ln_f; Conv1D weights are
 * stored transposed, (in, out). Writes path and config.json in the same directory; type
 * is F32, F16 or BF16. */
PARLM_API parlm_status parlm_gpt_save_safetensors(parlm_gpt *m, const char *path, parlm_wtype type);
/* Loads such a file (names with or without "transformer.", the attention-mask buffers
 * ignored) with the config.json beside it into a new model. F32 round-trips bit-exactly. */
PARLM_API parlm_status parlm_gpt_load_safetensors(parlm_gpt **out, const char *path);

#ifdef __cplusplus
}
#endif
#endif
