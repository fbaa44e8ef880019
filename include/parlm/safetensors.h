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

/* A model in Hugging Face's layout, with config.json beside it; type is F32, F16 or BF16.
 * GPT-2 as GPT2LMHeadModel: wte, wpe, h.N.ln_1, h.N.attn.c_attn, h.N.attn.c_proj, h.N.ln_2,
 * h.N.mlp.c_fc, h.N.mlp.c_proj, ln_f; Conv1D weights stored transposed, (in, out).
 * Llama as LlamaForCausalLM: model.embed_tokens, model.layers.N.{input_layernorm,
 * self_attn.{q,k,v,o}_proj, post_attention_layernorm, mlp.{gate,up,down}_proj},
 * model.norm, lm_head (only when untied); (out, in) as parlm's, but the rows of q_proj and
 * k_proj permuted within each head for HF's rotate_half RoPE (transformers' `permute`).
 * config.json holds transformers' keys (rope_scaling {"type": "linear", "factor"} or null).
 * Writes path and path's directory's config.json. */
PARLM_API parlm_status parlm_gpt_save_safetensors(parlm_gpt *m, const char *path, parlm_wtype type);
/* The same into directory dir (made if missing) in shards of at most max_shard_bytes of
 * tensor data (a bigger tensor alone in one; 0: no limit), as transformers'
 * save_pretrained(max_shard_size=...): model-00001-of-0000N.safetensors ... and
 * model.safetensors.index.json (metadata.total_size, weight_map), written after the
 * shards; one shard is model.safetensors without an index (an earlier index there is
 * removed: a reader of the directory would take it). *n_shards (may be NULL) gets N. */
PARLM_API parlm_status parlm_gpt_save_safetensors_sharded(parlm_gpt *m, const char *dir,
                                                          parlm_wtype type,
                                                          uint64_t max_shard_bytes, int *n_shards);
/* Loads such a model into a new one; path is a .safetensors file, an index (*.json), or a
 * directory holding model.safetensors.index.json or model.safetensors; config.json is read
 * from the same directory (model_type "gpt2" or "llama"; other activations, RoPE scalings
 * or biases are PARLM_EUNSUPPORTED naming the key). GPT-2 names may carry "transformer."
 * (the attention-mask buffers are ignored). An index's shards are all opened and checked: a
 * tensor the index maps to a shard that lacks it, or that two shards hold, is an error
 * naming the shard file. F32 round-trips bit-exactly. */
PARLM_API parlm_status parlm_gpt_load_safetensors(parlm_gpt **out, const char *path);

#ifdef __cplusplus
}
#endif
#endif
