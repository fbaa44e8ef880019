/* parlm/checkpoint.h — model files.
 * llm.c's model format (256-int32 header, magic 20240326, version 3 = f32 weights,
 * 5 = bf16 weights; tensors grouped by kind across layers) for import and export, so
 * GPT-2 weights exported by llm.c's train_gpt2.py load here. And parlm's own training
 * checkpoint: config, parameters, AdamW state, step, data position and RNG state, with a
 * checksum, so that training resumes exactly. Every file is written atomically (temp
 * file, fsync, rename) and read as untrusted input: a corrupt, truncated or mismatched
 * file is an error naming the file and what is wrong. */
#ifndef PARLM_CHECKPOINT_H
#define PARLM_CHECKPOINT_H
#include <stdint.h>

#include "data.h"
#include "model.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PARLM_LLMC_MAGIC 20240326

/* Loads an llm.c model file (version 3 or 5) into a new model. */
PARLM_API parlm_status parlm_gpt_load_llmc(parlm_gpt **out, const char *path);
/* Writes the model's weights as an llm.c file: version 3 (f32) or 5 (bf16, rounded). */
PARLM_API parlm_status parlm_gpt_save_llmc(parlm_gpt *m, const char *path, int version);

/* What besides the model a resumed run needs to continue exactly. */
typedef struct parlm_train_state {
    int64_t step;              /* optimizer steps done */
    uint64_t rng;              /* state of the trainer's sampling RNG */
    parlm_loader_pos train;    /* next training batch */
    int32_t B, T, grad_accum;  /* the batch geometry the run was started with */
    int32_t world;             /* processes (data-parallel ranks) */
    uint64_t seed;             /* initial seed */
    double tokens;             /* tokens trained on */
} parlm_train_state;

/* Saves model (parameters, AdamW moments if any) and state to path, atomically. */
PARLM_API parlm_status parlm_checkpoint_save(const char *path, parlm_gpt *m,
                                             const parlm_train_state *state);
/* Loads a checkpoint into a new model (with its AdamW state and step) and *state. */
PARLM_API parlm_status parlm_checkpoint_load(const char *path, parlm_gpt **out,
                                             parlm_train_state *state);

#ifdef __cplusplus
}
#endif
#endif
