/* parlm/data.h — token shards and the batch loader.
 * A shard is llm.c's format: a header of 256 little-endian int32 (magic 20240520,
 * version 1, token count) followed by that many uint16 tokens. Shards are written
 * atomically and read as untrusted input (size, truncation and token range checked).
 * The loader walks shards in order; rank r of R reads its own B*T+1 window of every
 * R*B*T block, so ranks see disjoint tokens (llm.c's distributed layout). */
#ifndef PARLM_DATA_H
#define PARLM_DATA_H
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PARLM_SHARD_MAGIC 20240520
#define PARLM_SHARD_VERSION 1

/* Writes n tokens (each < 65536) to path atomically (temp file, fsync, rename). */
PARLM_API parlm_status parlm_shard_write(const char *path, const uint16_t *tokens, size_t n);

/* Reads a whole shard; *tokens is allocated (free with parlm_free). */
PARLM_API parlm_status parlm_shard_read(const char *path, uint16_t **tokens, size_t *n);

/* Validates the header against the file size and returns the token count. */
PARLM_API parlm_status parlm_shard_count(const char *path, size_t *n);

/* What a data file holds, decided from its name and content together (never from the
 * first file of a glob alone). */
typedef enum parlm_data_kind { PARLM_DATA_SHARD = 1, PARLM_DATA_TEXT = 2 } parlm_data_kind;

/* A file named *.bin, or one starting with the shard magic, must be a valid shard: any
 * header fault is an error naming the file. Anything else is text if its first 4 KiB hold
 * no NUL byte, else an error ("neither a token shard nor text"). */
PARLM_API parlm_status parlm_data_probe(const char *path, parlm_data_kind *kind);

/* A 64-bit checksum of a whole shard file (header and tokens), read in 1 MiB chunks: to
 * check that several processes see the same bytes. */
PARLM_API parlm_status parlm_shard_checksum(const char *path, uint64_t *sum);

typedef struct parlm_loader parlm_loader;

/* Where a loader is: enough to resume exactly (stored in training checkpoints). */
typedef struct parlm_loader_pos {
    uint64_t shard;    /* index into the sorted shard list */
    uint64_t position; /* token offset of this step's block (rank 0's window) in the shard */
} parlm_loader_pos;

/* Opens the shards matching `pattern` (a glob, or a single file), sorted by name, for
 * batches of B sequences of T tokens; rank/nranks select this process's windows.
 * vocab > 0: every token read is checked to be < vocab. Errors name the offending file:
 * no match, a bad header, a truncated file, a shard too small for one R*B*T+1 block. */
PARLM_API parlm_status parlm_loader_open(parlm_loader **out, const char *pattern, int B, int T,
                                         int rank, int nranks, int vocab);
PARLM_API void parlm_loader_free(parlm_loader *l);

/* Next batch: inputs and targets are B*T int32 each (targets = inputs shifted by one).
 * After the last block of the last shard it wraps to the first shard. */
PARLM_API parlm_status parlm_loader_next(parlm_loader *l, int32_t *inputs, int32_t *targets);

PARLM_API parlm_loader_pos parlm_loader_tell(const parlm_loader *l);
/* Resumes at pos (from parlm_loader_tell of a loader over the same shards, B, T, R). */
PARLM_API parlm_status parlm_loader_seek(parlm_loader *l, parlm_loader_pos pos);
PARLM_API size_t parlm_loader_num_shards(const parlm_loader *l);
/* Path of shard i (sorted order), NULL if out of range. */
PARLM_API const char *parlm_loader_shard_path(const parlm_loader *l, size_t i);
/* Total tokens over all shards. */
PARLM_API uint64_t parlm_loader_num_tokens(const parlm_loader *l);

#ifdef __cplusplus
}
#endif
#endif
