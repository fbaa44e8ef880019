/* lib/io/ckpt_format.h — internal: the layout of parlm's training checkpoint and the
 * header readers shared by the whole-model code (checkpoint.c) and the sharded one
 * (ckpt_shards.c). A 512-byte header of 64 little-endian uint64 slots, then the
 * parameters and, if present, the AdamW m and v, all f32, in the full model's order.
 * Slot H_HASH holds an FNV-1a hash of the payload and then of the whole header (that slot
 * read as 0): a flipped bit anywhere, the step and the data position included, is refused.
 * FNV over 8-byte words changes its state for any change of one word, so every single-word
 * corruption is caught, not just most. Version 1 files (older parlm) hashed the payload
 * only; they still load under that rule, and the next checkpoint of a resumed run is
 * version 3. Version 3 adds the architecture slots (H_ARCH ..: arch, KV heads, SwiGLU
 * width, untied head, and the float bits of rope theta, rope scale and norm epsilon);
 * versions 1 and 2 are GPT-2 models and their readers ignore those slots. */
#ifndef PARLM_LIB_CKPT_FORMAT_H
#define PARLM_LIB_CKPT_FORMAT_H
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "parlm/checkpoint.h"

enum {
    H_MAGIC, H_VERSION, H_L, H_NH, H_C, H_MAXT, H_V, H_VP, H_NPARAMS, H_HAS_ADAM, H_STEP, H_RNG,
    H_SHARD, H_POS, H_B, H_T, H_ACCUM, H_WORLD, H_SEED, H_TOKENS, H_HASH, H_ARCH, H_NKV, H_FFN,
    H_UNTIED, H_ROPE_THETA, H_ROPE_SCALE, H_NORM_EPS, H_SLOTS = 64
};
#define CKPT_MAGIC 0x504b43434d4c5250ULL /* "PRLMCCKP" little-endian */
#define CKPT_VERSION 3 /* 1 and 2 differ only in what the hash covers; 3 adds H_ARCH .. */
#define FNV_START 0xcbf29ce484222325ULL

/* FNV-1a over 8-byte words, then the tail bytes one by one (~10x faster than bytewise). */
static inline uint64_t fnv_update(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t words = n / 8;
    for (size_t i = 0; i < words; i++) {
        uint64_t w;
        memcpy(&w, b + 8 * i, 8);
        h = (h ^ w) * 0x100000001b3ULL;
    }
    for (size_t i = words * 8; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

/* Opens a regular file for reading; *size its bytes. Errors name the file. */
parlm_status parlm_ckpt_open_checked(const char *path, FILE **f, long long *size);
/* An llm.c model file's header: its config and whether it holds bf16 (version 5) weights;
 * the file size is checked against the shape. */
parlm_status parlm_llmc_read_header(const char *path, FILE *f, long long size,
                                    parlm_gpt_config *cfg, int *bf16);
/* A checkpoint's header h[H_SLOTS], validated (magic, version, shape, size): the config,
 * the parameter count and the buffers stored (1, or 3 with AdamW). */
parlm_status parlm_ckpt_read_header(const char *path, FILE *f, long long size, uint64_t *h,
                                    parlm_gpt_config *cfg, int64_t *nparams, int *nbufs);
void parlm_ckpt_fill_header(uint64_t *h, parlm_gpt_config c, int64_t nparams, int has_adam,
                            const parlm_train_state *s);
void parlm_ckpt_state_from_header(const uint64_t *h, parlm_train_state *state);
/* The value of slot H_HASH for a payload hashed to payload_hash (h's own slot is ignored). */
uint64_t parlm_ckpt_final_hash(uint64_t payload_hash, uint64_t *h);


/* Sharded saving (ckpt_shards.c) for the checkpoint directory: this rank's part of
 * parlm_checkpoint_save_shards (rank 0 writes path unless path is NULL or prior is an
 * error, which it then returns; the others hand over their slices), and rank 0's status
 * (with its message) made every rank's. Both collective over comm. */
struct parlm_comm;
parlm_status parlm_ckpt_save_shards_local(const char *path, parlm_status prior,
                                          parlm_gpt *const *sh, int n, struct parlm_comm *comm,
                                          const parlm_train_state *state);
parlm_status parlm_ckpt_share_status(struct parlm_comm *comm, parlm_status st);

#endif
