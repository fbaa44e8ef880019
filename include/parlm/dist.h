/* parlm/dist.h — collectives over MPI for data-parallel training: all-reduce,
 * reduce-scatter and all-gather of f32 buffers, blocking or as requests that progress
 * while computation continues. A parlm_comm wraps a private duplicate of an MPI
 * communicator and knows the node layout, so ranks on one node reduce through shared
 * memory and only node leaders talk over the network (a pipelined ring).
 * This header needs no <mpi.h>: MPI objects cross it as pointers to them (void *). */
#ifndef PARLM_DIST_H
#define PARLM_DIST_H
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct parlm_comm parlm_comm;       /* opaque; parlm_comm_free (collective) */
typedef struct parlm_request parlm_request; /* opaque; completed by test / wait */

/* ---- MPI start-up ------------------------------------------------------------------
 * Initializing MPI is the program's business (MPI_Init_thread, or these helpers).
 * parlm_dist_init asks for MPI_THREAD_MULTIPLE and accepts whatever MPI provides:
 * the collectives here only need MPI called by one thread at a time (FUNNELED if
 * it is always the same thread, SERIALIZED otherwise). *provided (may be NULL)
 * receives the level granted, one of PARLM_THREAD_*. If MPI is already initialized,
 * nothing is done and the current level is reported. argc/argv may be NULL.
 * parlm_dist_finalize calls MPI_Finalize unless MPI is not initialized or is already
 * finalized; free every parlm_comm first. Errors: PARLM_ESYSTEM with MPI's message. */
enum {
    PARLM_THREAD_SINGLE = 0,
    PARLM_THREAD_FUNNELED = 1,
    PARLM_THREAD_SERIALIZED = 2,
    PARLM_THREAD_MULTIPLE = 3,
};
PARLM_API parlm_status parlm_dist_init(int *argc, char ***argv, int *provided);
PARLM_API parlm_status parlm_dist_finalize(void);
PARLM_API const char *parlm_thread_level_name(int level); /* "multiple", ...; never NULL */

/* ---- communicators ------------------------------------------------------------------
 * Creation and free are collective over the MPI communicator's ranks. The parlm_comm
 * duplicates the communicator (its traffic never meets the caller's), sets
 * MPI_ERRORS_RETURN on everything it creates, splits it into nodes
 * (MPI_COMM_TYPE_SHARED) and node leaders (local rank 0 of each node), and on nodes with
 * more than one rank allocates an MPI-3 shared-memory window (16 MiB per local rank by
 * default: on nodes of two ranks, a rank hands over that much while its peer computes;
 * see mpi/shm.c) for the intra-node path; ring scratch is another 2 MiB. Nothing is allocated
 * per call afterwards, except recursive-doubling scratch growing in powers of two.
 * mpi_comm_ptr points to an MPI_Comm (e.g. &comm); *out = NULL on failure.
 * cfg (NULL, or fields left 0: the defaults) tunes the collectives; the library reads no
 * environment: programs fill it from PARLM_ALLREDUCE, PARLM_RING_CHUNK, PARLM_SHM_CHUNK
 * and PARLM_SHM_NBUF (apps/cli.c). Every rank must pass the same configuration.
 * A parlm_comm is used by one thread at a time. Errors: PARLM_EINVAL (NULL, MPI not
 * initialized, MPI_COMM_NULL, a field out of range), PARLM_ENOMEM, PARLM_ESYSTEM. */
typedef struct parlm_comm_config {
    unsigned algo;      /* PARLM_ALGO_*: forces the algorithm of all-reduces made with
                         * PARLM_ALGO_AUTO (0 = AUTO: chosen per call) */
    int64_t ring_chunk; /* floats per ring message, PARLM_COMM_CHUNK_MIN..MAX (65536) */
    int64_t shm_chunk;  /* floats per shared-memory buffer, same range (65536) */
    int64_t shm_nbuf;   /* buffers per local rank used in rotation, 2..4096 (64) */
} parlm_comm_config;
enum {
    PARLM_COMM_CHUNK_MIN = 256,
    PARLM_COMM_CHUNK_MAX = 1 << 26,
    PARLM_SHM_NBUF_MIN = 2,
    PARLM_SHM_NBUF_MAX = 4096,
};
PARLM_API parlm_status parlm_comm_world(parlm_comm **out, const parlm_comm_config *cfg);
PARLM_API parlm_status parlm_comm_from_mpi(parlm_comm **out, const void *mpi_comm_ptr,
                                           const parlm_comm_config *cfg);
/* The configuration in use, defaults filled in (e.g. to create sub-communicators alike). */
PARLM_API parlm_status parlm_comm_get_config(const parlm_comm *comm, parlm_comm_config *out);
/* Completes outstanding requests, then frees. NULL is a no-op. After MPI_Finalize it
 * only releases memory. */
PARLM_API parlm_status parlm_comm_free(parlm_comm *comm);

/* Ranks and layout (-1 for NULL). node: index of this rank's node, 0 .. nodes-1, in
 * the order of the nodes' first ranks; local rank 0 of each node is its leader. */
PARLM_API int parlm_comm_rank(const parlm_comm *comm);
PARLM_API int parlm_comm_size(const parlm_comm *comm);
PARLM_API int parlm_comm_local_rank(const parlm_comm *comm);
PARLM_API int parlm_comm_local_size(const parlm_comm *comm);
PARLM_API int parlm_comm_node(const parlm_comm *comm);
PARLM_API int parlm_comm_nodes(const parlm_comm *comm);
/* Writes the duplicated MPI_Comm the parlm_comm uses into *(MPI_Comm *)mpi_comm_out. */
PARLM_API parlm_status parlm_comm_get_mpi(const parlm_comm *comm, void *mpi_comm_out);

PARLM_API parlm_status parlm_comm_barrier(parlm_comm *comm);
/* bytes from root's buf to every rank's buf (any size; sent in pieces below 2 GiB). */
PARLM_API parlm_status parlm_comm_bcast(parlm_comm *comm, void *buf, size_t bytes, int root);

/* Checks that every rank passed the same value (e.g. a hash of the configuration).
 * Returns PARLM_EINVAL on every rank if any differs, with a message naming the field,
 * rank 0's value and each rank that differs from it with its value (up to 8 listed).
 * Collective; field must not be NULL (on any rank: it is checked before communicating). */
PARLM_API parlm_status parlm_comm_check_agree(parlm_comm *comm, const char *field, uint64_t value);

/* ---- buffers the node's ranks share ---------------------------------------------------
 * parlm_comm_alloc_shared gives n floats (64-byte aligned, zeroed) in an MPI-3
 * shared-memory window of the node (collective over comm; every rank asks for the same
 * n). A collective on a buffer inside it, on a single node of two ranks, reads the peer's
 * buffer in place instead of copying through the window: all-reduce has half the memory
 * traffic of the copying path (each rank reduces its half of every chunk from both
 * buffers, then copies the other half from its owner); reduce-scatter sums its block from
 * both buffers; all-gather copies the other block from its owner. Every rank must then pass the same offset into
 * its own allocation (as with data-parallel gradients); a mismatch is PARLM_EINVAL. The
 * result is bitwise that of the copying path. Where no window can be made (one rank per
 * node, MPI refusing), the memory is private and collectives copy as usual. Freeing is
 * collective too and completes the outstanding requests first. */
PARLM_API parlm_status parlm_comm_alloc_shared(parlm_comm *comm, int64_t n, float **out);
PARLM_API parlm_status parlm_comm_free_shared(parlm_comm *comm, float *p);

/* ---- one buffer the node's ranks share ------------------------------------------------
 * parlm_node_region_create maps `bytes` (zeroed) that every rank of comm reads and writes
 * at parlm_node_region_base (addresses may differ between processes): an MPI-3 shared
 * window cut into one contiguous part per rank, each first touched by its rank. The
 * caller synchronizes (C11 atomics in the region work across the processes). Collective;
 * every rank passes the same bytes. A communicator spanning several nodes (or fake
 * nodes) is PARLM_EUNSUPPORTED on every rank; too little room in the shared-memory file
 * system (/dev/shm, or Open MPI's osc_sm_backing_directory) PARLM_ENOMEM. Free
 * (collective) before the comm. */
typedef struct parlm_node_region parlm_node_region;
PARLM_API parlm_status parlm_node_region_create(parlm_node_region **out, parlm_comm *comm,
                                                size_t bytes);
PARLM_API void *parlm_node_region_base(const parlm_node_region *r);
PARLM_API size_t parlm_node_region_bytes(const parlm_node_region *r);
PARLM_API void parlm_node_region_free(parlm_node_region *r);

/* ---- collectives -----------------------------------------------------------------
 * All work in place on a float buffer of n elements; n, op and flags must be the same
 * on every rank, and every rank must issue the collectives of a communicator in the
 * same order (as in MPI). Results are bitwise identical on every rank.
 *
 * Block distribution (reduce-scatter and all-gather; use parlm_block_range):
 * with p ranks, rank r owns elements [r*n/p, (r+1)*n/p) (integer division), so blocks
 * differ in length by at most one and the first ones may be empty when n < p.
 *
 * flags = one algorithm | optional PARLM_WIRE_BF16:
 *   PARLM_ALGO_AUTO  chosen from the message size and node layout (see dist_choose in
 *                    mpi/allreduce.c for the measured thresholds); the
 *                    communicator's cfg.algo overrides it for all-reduce.
 *   PARLM_ALGO_RING  ring: reduce-scatter then all-gather, in chunks pipelined so the
 *                    transfer of one chunk overlaps the reduction of the previous one.
 *   PARLM_ALGO_SHM   node-local reduction through the shared-memory window; with
 *                    several nodes the node leaders run the ring on node sums, then each
 *                    leader broadcasts through its window. Reduce-scatter and all-gather
 *                    use it on a single node and fall back to the ring otherwise.
 *   PARLM_ALGO_RD    recursive doubling (latency-bound small messages; all-reduce only).
 *   PARLM_ALGO_MPI   MPI_Iallreduce / MPI_Ireduce_scatter / MPI_Iallgatherv.
 *   PARLM_WIRE_BF16  values travel between ranks as bf16 (round to nearest even) and
 *                    are accumulated in f32: half the bytes, about 3 significant digits.
 *                    All ranks still end with identical values: the owner of a reduced
 *                    block rounds it to bf16 too before it is shared. Shared memory
 *                    inside a node has no wire and stays exact f32; PARLM_ALGO_MPI
 *                    cannot do it (PARLM_EUNSUPPORTED).
 * op PARLM_REDUCE_AVG multiplies the sum by 1.0f/p (p = all ranks of the communicator).
 * Errors (on the calling rank, before any communication): PARLM_EINVAL for a NULL
 * comm, n < 0, NULL buf with n > 0, an unknown op or flag; PARLM_EUNSUPPORTED for a
 * combination the algorithm cannot do (RD or MPI with n > INT_MAX, bf16 with MPI, RD for
 * reduce-scatter / all-gather). Failures of MPI: PARLM_ESYSTEM with MPI's message; the
 * communicator is then unusable (every later call fails). */
typedef enum parlm_reduce_op {
    PARLM_REDUCE_SUM = 0,
    PARLM_REDUCE_AVG = 1,
} parlm_reduce_op;

enum {
    PARLM_ALGO_AUTO = 0,
    PARLM_ALGO_RING = 1,
    PARLM_ALGO_SHM = 2,
    PARLM_ALGO_RD = 3,
    PARLM_ALGO_MPI = 4,
    PARLM_ALGO_MASK = 0xff,
    PARLM_WIRE_BF16 = 0x100,
};
/* "auto", "ring", "shm", "rd", "mpi"; "?" for anything else. */
PARLM_API const char *parlm_algo_name(unsigned algo);

/* [*start, *start + *count) is rank r's block of n elements over p ranks. */
PARLM_API void parlm_block_range(int64_t n, int p, int r, int64_t *start, int64_t *count);

/* buf (n): every rank ends with op over all ranks' buf. */
PARLM_API parlm_status parlm_allreduce(parlm_comm *comm, float *buf, int64_t n, parlm_reduce_op op,
                                       unsigned flags);
/* buf (n): this rank's block ends with op over all ranks' buf on that block; the rest
 * of buf is left undefined (it is scratch). */
PARLM_API parlm_status parlm_reduce_scatter(parlm_comm *comm, float *buf, int64_t n,
                                            parlm_reduce_op op, unsigned flags);
/* buf (n): each rank's block is copied into every other rank's buf. */
PARLM_API parlm_status parlm_all_gather(parlm_comm *comm, float *buf, int64_t n, unsigned flags);

/* ---- nonblocking ------------------------------------------------------------------
 * The *_start calls check their arguments, queue the collective and return at once
 * (*req = NULL on error). buf must stay untouched until the request completes.
 * Progress is made only inside parlm_request_test / _wait / parlm_comm_progress:
 * call test from the compute loop (e.g. between layers) to keep the transfer moving.
 * Why not a communication thread: on a CPU the compute uses every core, so a progress
 * thread would either spin (stealing a core from the GEMMs) or sleep (adding latency),
 * and it would need MPI_THREAD_MULTIPLE, which makes every MPI call take locks.
 * Requests of a communicator run one after another in the order they were started (so
 * buckets complete in order: when one is complete, all earlier ones are too); several
 * may be outstanding. test and wait work on requests of any of the three kinds. */
PARLM_API parlm_status parlm_allreduce_start(parlm_comm *comm, float *buf, int64_t n,
                                             parlm_reduce_op op, unsigned flags,
                                             parlm_request **req);
PARLM_API parlm_status parlm_reduce_scatter_start(parlm_comm *comm, float *buf, int64_t n,
                                                  parlm_reduce_op op, unsigned flags,
                                                  parlm_request **req);
PARLM_API parlm_status parlm_all_gather_start(parlm_comm *comm, float *buf, int64_t n,
                                              unsigned flags, parlm_request **req);
/* Advances the communicator's queue without blocking. *done = 1 if *req is complete:
 * the request is then released and *req set to NULL, and its status is returned
 * (a failed collective returns its error here). *req == NULL: *done = 1, PARLM_OK. */
PARLM_API parlm_status parlm_request_test(parlm_request **req, int *done);
/* Blocks until *req completes (and every request started before it); releases it,
 * sets *req = NULL and returns its status. */
PARLM_API parlm_status parlm_request_wait(parlm_request **req);
/* Advances the queue without blocking (e.g. when holding several requests). */
PARLM_API parlm_status parlm_comm_progress(parlm_comm *comm);

#ifdef __cplusplus
}
#endif
#endif
