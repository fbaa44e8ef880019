/* parlm/gguf.h — GGUF v3 files (llama.cpp's model format; spec: ggml's docs/gguf.md):
 * a header, typed key-value metadata, tensor infos, then aligned tensor data.
 * The reader maps the file and checks every count, length and offset against the file
 * size before it allocates or points at anything, so a bad file is an error naming the
 * file and the field; tensor data is used in place (pointers into the mapping). The writer
 * collects metadata and tensors and writes the file atomically. Little-endian only. */
#ifndef PARLM_GGUF_H
#define PARLM_GGUF_H
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "quant.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct parlm_tokenizer parlm_tokenizer; /* parlm/tokenizer.h */

/* Metadata value types (the numbers in the file). */
typedef enum parlm_gguf_type {
    PARLM_GGUF_U8 = 0, PARLM_GGUF_I8 = 1, PARLM_GGUF_U16 = 2, PARLM_GGUF_I16 = 3,
    PARLM_GGUF_U32 = 4, PARLM_GGUF_I32 = 5, PARLM_GGUF_F32 = 6, PARLM_GGUF_BOOL = 7,
    PARLM_GGUF_STRING = 8, PARLM_GGUF_ARRAY = 9, PARLM_GGUF_U64 = 10, PARLM_GGUF_I64 = 11,
    PARLM_GGUF_F64 = 12,
} parlm_gguf_type;

#define PARLM_GGUF_DEFAULT_ALIGNMENT 32
#define PARLM_GGUF_MAX_DIMS 4

/* ---- reading ---------------------------------------------------------------------- */

typedef struct parlm_gguf parlm_gguf;

/* Maps and validates path. Tensor types other than those of parlm_wtype are refused
 * ("unsupported tensor type N for tensor NAME"). */
PARLM_API parlm_status parlm_gguf_open(parlm_gguf **out, const char *path);
PARLM_API void parlm_gguf_close(parlm_gguf *g);

PARLM_API uint32_t parlm_gguf_version(const parlm_gguf *g);
PARLM_API uint32_t parlm_gguf_alignment(const parlm_gguf *g);
/* File offset of the tensor data section. */
PARLM_API uint64_t parlm_gguf_data_offset(const parlm_gguf *g);

PARLM_API int64_t parlm_gguf_num_kv(const parlm_gguf *g);
/* Index of key, or -1. */
PARLM_API int64_t parlm_gguf_find_kv(const parlm_gguf *g, const char *key);
PARLM_API const char *parlm_gguf_kv_key(const parlm_gguf *g, int64_t i);
/* Value type of entry i (-1 if there is no entry i); for an array, *elem (may be NULL)
 * receives the element type and *n (may be NULL) its length. */
PARLM_API parlm_gguf_type parlm_gguf_kv_type(const parlm_gguf *g, int64_t i, parlm_gguf_type *elem,
                                             uint64_t *n);

/* Typed getters by key: PARLM_EFORMAT (naming the file and key) if the key is missing or
 * holds another kind of value. _uint accepts any integer type holding a value >= 0, _int
 * any integer that fits int64, _float f32 or f64. */
PARLM_API parlm_status parlm_gguf_get_uint(const parlm_gguf *g, const char *key, uint64_t *v);
PARLM_API parlm_status parlm_gguf_get_int(const parlm_gguf *g, const char *key, int64_t *v);
PARLM_API parlm_status parlm_gguf_get_float(const parlm_gguf *g, const char *key, double *v);
PARLM_API parlm_status parlm_gguf_get_bool(const parlm_gguf *g, const char *key, int *v);
/* A string: *s points into the file (not NUL-terminated), *len bytes. */
PARLM_API parlm_status parlm_gguf_get_str(const parlm_gguf *g, const char *key, const char **s,
                                          size_t *len);
/* An array of numbers or bools: *data points at n little-endian elements of *elem in the
 * file (unaligned: copy with memcpy). */
PARLM_API parlm_status parlm_gguf_get_arr(const parlm_gguf *g, const char *key,
                                          parlm_gguf_type *elem, uint64_t *n, const void **data);
/* Element i of an array of strings. */
PARLM_API parlm_status parlm_gguf_get_arr_str(const parlm_gguf *g, const char *key, uint64_t i,
                                              const char **s, size_t *len);

typedef struct parlm_gguf_tensor {
    const char *name;
    int n_dims;
    uint64_t ne[PARLM_GGUF_MAX_DIMS]; /* ggml order: ne[0] is the contiguous dimension */
    parlm_wtype type;
    uint64_t offset; /* relative to the data section, as stored */
    uint64_t size;   /* bytes */
    const void *data; /* in the mapping */
} parlm_gguf_tensor;

PARLM_API int64_t parlm_gguf_num_tensors(const parlm_gguf *g);
PARLM_API int64_t parlm_gguf_find_tensor(const parlm_gguf *g, const char *name);
PARLM_API const parlm_gguf_tensor *parlm_gguf_tensor_at(const parlm_gguf *g, int64_t i);

/* ---- writing ---------------------------------------------------------------------- */

typedef struct parlm_gguf_writer parlm_gguf_writer;

PARLM_API parlm_status parlm_gguf_writer_create(parlm_gguf_writer **out);
PARLM_API void parlm_gguf_writer_free(parlm_gguf_writer *w);

/* Adds a scalar of type t (not STRING or ARRAY) read from *v (the C type of t; BOOL is
 * one uint8_t 0 or 1). Keys must be unique. "general.alignment" (U32, a power of two)
 * sets the alignment of the data. */
PARLM_API parlm_status parlm_gguf_set(parlm_gguf_writer *w, const char *key, parlm_gguf_type t,
                                      const void *v);
PARLM_API parlm_status parlm_gguf_set_str(parlm_gguf_writer *w, const char *key, const char *s,
                                          size_t len);
/* An array of n scalars of type elem (host little-endian layout). */
PARLM_API parlm_status parlm_gguf_set_arr(parlm_gguf_writer *w, const char *key,
                                          parlm_gguf_type elem, uint64_t n, const void *data);
/* An array of n strings; lens may be NULL (then each is NUL-terminated). */
PARLM_API parlm_status parlm_gguf_set_arr_str(parlm_gguf_writer *w, const char *key, uint64_t n,
                                              const char *const *s, const size_t *lens);

/* Adds a tensor of ne (ggml order, n_dims <= 4) elements of type, its bytes at data,
 * which is borrowed: it must stay valid until parlm_gguf_write returns. Names are unique
 * and at most 63 bytes. */
PARLM_API parlm_status parlm_gguf_add_tensor(parlm_gguf_writer *w, const char *name,
                                             parlm_wtype type, int n_dims, const uint64_t *ne,
                                             const void *data);

/* Writes everything to path atomically (temp file, fsync, rename). */
PARLM_API parlm_status parlm_gguf_write(parlm_gguf_writer *w, const char *path);

/* ---- GPT-2 and Llama models ------------------------------------------------------- */

/* Writes model m as a llama.cpp "gpt2" GGUF: the gpt2.* hyperparameters and llama.cpp's
 * tensor names (token_embd, position_embd, blk.N.attn_norm / attn_qkv / attn_output /
 * ffn_norm / ffn_up / ffn_down (.weight, .bias), output_norm; the LM head is tied, so no
 * output.weight). Matrices are stored as type (Q types need rows of a multiple of 32
 * elements; a matrix whose rows do not fit is stored as f16), vectors as f32; the token
 * embedding has the real vocabulary's rows, not the padded ones. With encoder_json and
 * vocab_bpe (OpenAI's GPT-2 files, both or neither) the BPE tokenizer goes in too
 * (tokenizer.ggml.*), so the file needs no other file. */
PARLM_API parlm_status parlm_gpt_save_gguf(parlm_gpt *m, const char *path, parlm_wtype type,
                                           const char *encoder_json, const char *vocab_bpe);
/* As parlm_gpt_save_gguf, with the tokenizer tok stored in the file (a "llama" one: see
 * parlm_tokenizer_write_gguf), which must have the model's vocabulary size. */
PARLM_API parlm_status parlm_gpt_save_gguf_tok(parlm_gpt *m, const char *path, parlm_wtype type,
                                               const parlm_tokenizer *tok);
/* Loads a "gpt2" or "llama" GGUF into a new model, converting every tensor to f32 (padding rows of
 * the token embedding are zero). An f32 file round-trips bit-exactly. */
PARLM_API parlm_status parlm_gpt_load_gguf(parlm_gpt **out, const char *path);

/* What the loader saw of the stored weights. */
typedef struct parlm_gguf_load_info {
    parlm_wtype wtype; /* the storage type of most of the matrices' weights (2-D tensors):
                        * the type the file runs as (parlm_gpt_set_decode_type for Q8_0 or
                        * Q4_0, parlm_gpt_set_bf16 for bf16) */
    int blocks_exact;  /* 1 if every Q8_0 / Q4_0 tensor's blocks are bit for bit
                        * parlm_quantize of its loaded (dequantized) weights, so that the
                        * decode copy parlm_gpt_set_decode_type makes holds the file's blocks;
                        * 0 if some block re-quantizes differently (another quantizer's
                        * rounding) */
} parlm_gguf_load_info;

/* parlm_gpt_load_gguf, and *info (may be NULL) about the stored weights. */
PARLM_API parlm_status parlm_gpt_load_gguf_ex(parlm_gpt **out, const char *path,
                                              parlm_gguf_load_info *info);

/* A view of a "gpt2" or "llama" GGUF for inference (parlm_gpt_create_view): the file stays
 * mapped and its matrices are used where they lie, as stored, with no copy; only the
 * vectors (norms, biases, position table) are converted to f32. The layers' matrices and
 * the LM head (the token embedding when tied) must share one type of f32, q8_0 and q4_0;
 * another mix is PARLM_EUNSUPPORTED naming the tensor (parlm_gpt_load_gguf copies any
 * mix). The model keeps the file open until parlm_gpt_free. *info (may be NULL): the
 * matrices' type, blocks_exact 1 (the blocks are the file's). */
PARLM_API parlm_status parlm_gpt_map_gguf(parlm_gpt **out, const char *path,
                                          parlm_gguf_load_info *info);

#ifdef __cplusplus
}
#endif
#endif
