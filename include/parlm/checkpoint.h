/* parlm/checkpoint.h — model files.
 * llm.c's model format (256-int32 header, magic 20240326, version 3 = f32 weights,
 * 5 = bf16 weights; tensors grouped by kind across layers) for import and export, so
 * GPT-2 weights exported by llm.c's train_gpt2.py load here. And parlm's own training
 * checkpoint: config, parameters, AdamW state, step, data position and RNG state, with a
 * checksum over the whole file, so that training resumes exactly. Every file is written
 * atomically (temp file, fsync, rename) and read as untrusted input: a corrupt, truncated
 * or mismatched file is an error naming the file and what is wrong. And a run's checkpoint
 * directory: final names, a lock for its one writer, rotation that never loses data. */
#ifndef PARLM_CHECKPOINT_H
#define PARLM_CHECKPOINT_H
#include <stddef.h>
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

/* What a model file claims to be, by its magic number. */
typedef enum parlm_model_kind {
    PARLM_MODEL_UNKNOWN, PARLM_MODEL_LLMC, PARLM_MODEL_CHECKPOINT,
    PARLM_MODEL_SHARD /* a token shard (parlm/data.h): not a model */
} parlm_model_kind;
PARLM_API parlm_status parlm_model_file_kind(const char *path, parlm_model_kind *kind);
/* Loads an llm.c model file or a parlm checkpoint, whichever the magic number says, so
 * an error is that format's (not the other loader's "bad magic"). *state (may be NULL)
 * gets the checkpoint's training state, all zero for an llm.c file. */
PARLM_API parlm_status parlm_gpt_load(parlm_gpt **out, const char *path,
                                      parlm_train_state *state);

/* ---- model parallelism: a sharded model in the same files ----------------------------------
 * A checkpoint or llm.c file always holds the whole model, whatever layout (parlm_gpt_shard:
 * tensor-parallel slices, pipeline stages) wrote it or reads it. Saving assembles every
 * owned slice (parameters and AdamW m, v) into the full layout on one rank, which writes the
 * usual file, byte for byte what parlm_checkpoint_save writes of the whole model; loading
 * cuts each shard's slices from it. Both go tensor by tensor: beyond the shards, memory holds
 * about one full tensor. Assembling only copies, so values are exact. */
struct parlm_comm; /* parlm/dist.h (MPI builds) */

/* The model config a checkpoint or llm.c file holds (its header only), to plan a layout. */
PARLM_API parlm_status parlm_model_file_config(const char *path, parlm_gpt_config *cfg);

/* Loads a checkpoint or an llm.c model file into n new shards of the given layouts
 * (layout NULL and n = 1: the whole model), each holding its slices of the parameters and,
 * from a checkpoint, of the AdamW state, with the step set; *state (may be NULL) as for
 * parlm_gpt_load. The file is read once, by this process alone (every rank of a grid reads
 * it itself: no communication). On error no shard is left (out[k] = NULL). */
PARLM_API parlm_status parlm_gpt_load_shards(const char *path, const parlm_gpt_shard *layout,
                                             int n, parlm_gpt **out, parlm_train_state *state);

/* Saves the sharded model as one checkpoint at path, atomically: shards[0..n) are this
 * process's shards, comm (NULL: this process holds the whole model among its shards) the
 * processes holding the others. Every value must be owned exactly once over all shards
 * (parlm_gpt_slice.owner), so with data parallelism one replica saves: the other replicas'
 * ranks of comm pass n = 0 (no shard; they only take part in the collectives), or comm
 * holds that replica's ranks only. Rank 0 of comm, which holds a shard, writes. Memory
 * beyond the shards: one full tensor on every rank (a piece in flight), two on rank 0.
 * Collective over comm; all ranks return rank 0's status (path matters on rank 0 only). */
PARLM_API parlm_status parlm_checkpoint_save_shards(const char *path, parlm_gpt *const *shards,
                                                    int n, struct parlm_comm *comm,
                                                    const parlm_train_state *state);

/* ---- a training run's checkpoint directory ------------------------------------------------
 * Checkpoints are DIR/ckpt_<step>.bin (the step printed with %08lld). Readers consider only
 * these final names: a write in progress goes to ckpt_<step>.bin.tmp.<pid> and is renamed when
 * complete, and a file moved aside ends in .unreadable or .replaced. */

/* The steps of DIR's checkpoints, newest first: at most max of them in steps[], *n set.
 * A missing directory has none. */
PARLM_API parlm_status parlm_ckpt_list(const char *dir, int64_t *steps, int max, int *n);
/* buf = DIR/ckpt_<step>.bin */
PARLM_API parlm_status parlm_ckpt_path(char *buf, size_t len, const char *dir, int64_t step);

/* The writer's handle. Open creates the directory (and its parents) when missing, fails at
 * once if it cannot be written, and locks it: an exclusive flock on DIR/lock, which holds
 * "pid@host" of the holder. A directory locked by a live process is PARLM_EBUSY naming
 * it; the kernel drops the lock of a process that dies, so a killed run's lock is taken
 * over. Holding the lock, open removes the temp files dead writers left behind. */
typedef struct parlm_ckpt_dir parlm_ckpt_dir;
PARLM_API parlm_status parlm_ckpt_dir_open(parlm_ckpt_dir **out, const char *path);
/* Releases the lock. NULL is a no-op. */
PARLM_API void parlm_ckpt_dir_close(parlm_ckpt_dir *d);

typedef struct parlm_ckpt_dir_info {
    const char *stale_holder; /* "pid@host" of a holder that died holding the lock, or "" */
    const char *no_lock;      /* why the directory is not locked (a file system without
                                 locks: open goes on unlocked), or "" */
    int removed_tmp;          /* stale temp files removed by open */
} parlm_ckpt_dir_info;
PARLM_API parlm_ckpt_dir_info parlm_ckpt_dir_get_info(const parlm_ckpt_dir *d);

/* parlm_checkpoint_load of DIR/ckpt_<step>.bin; the handle remembers the outcome: a file
 * that failed to load is never deleted by rotation (and moved aside, not overwritten). */
PARLM_API parlm_status parlm_ckpt_dir_load(parlm_ckpt_dir *d, int64_t step, parlm_gpt **out,
                                           parlm_train_state *state);
/* Saves DIR/ckpt_<state->step>.bin (its path into path[len]) and rotates: of the files up
 * to that step, the newest `keep` that did not fail to load stay, older ones go. */
PARLM_API parlm_status parlm_ckpt_dir_save(parlm_ckpt_dir *d, parlm_gpt *m,
                                           const parlm_train_state *state, int keep, char *path,
                                           size_t len);
/* The same for a sharded model (see above). d is rank 0's handle (NULL on the other ranks,
 * which only take part in the assembling); path[len] gets the file's name on rank 0.
 * Collective over comm; every rank returns rank 0's status. */
PARLM_API parlm_status parlm_ckpt_dir_save_shards(parlm_ckpt_dir *d, parlm_gpt *const *shards,
                                                  int n, struct parlm_comm *comm,
                                                  const parlm_train_state *state, int keep,
                                                  char *path, size_t len);
/* parlm_gpt_load_shards of DIR/ckpt_<step>.bin, remembering the outcome as
 * parlm_ckpt_dir_load does. */
PARLM_API parlm_status parlm_ckpt_dir_load_shards(parlm_ckpt_dir *d, int64_t step,
                                                  const parlm_gpt_shard *layout, int n,
                                                  parlm_gpt **out, parlm_train_state *state);
/* Deletes every checkpoint in the directory (a new run that replaces an old one). */
PARLM_API parlm_status parlm_ckpt_dir_remove_all(parlm_ckpt_dir *d, int *removed);

#ifdef __cplusplus
}
#endif
#endif
