/* mpi/algo.h — internal: the two lower layers of mpi/, which know nothing of requests or
 * of the parlm_comm. Bottom: the arithmetic (reduce.c) and MPI errors. Above it the three
 * algorithms, ring.c, rd.c and shm.c, each a resumable state machine over its own state
 * and scratch: progress advances as far as it can without blocking and returns
 * DIST_PENDING, DIST_DONE or a negative parlm_status. None calls another; the request
 * engine (mpi/comm.h) owns their scratch and composes them. */
#ifndef PARLM_MPI_ALGO_H
#define PARLM_MPI_ALGO_H
#include <mpi.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "../base/error.h"
#include "parlm/dist.h"

#define DIST_PENDING 0
#define DIST_DONE 1

enum dist_kind { DIST_ALLREDUCE = 0, DIST_REDUCE_SCATTER = 1, DIST_ALL_GATHER = 2 };

/* MPI error code -> PARLM_ESYSTEM with "what failed: <MPI's error string>". */
static inline parlm_status dist_mpi_error(int err, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(err, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "MPI error code %d", err);
    return parlm_error(PARLM_ESYSTEM, "%s failed: %s", what, msg);
}

/* ---- arithmetic (mpi/reduce.c): plain loops the compiler vectorizes ----
 * (parlm_block_range, the block distribution every algorithm uses, lives there too) */
void dist_add(float *restrict dst, const float *restrict src, int64_t n);          /* dst += src */
void dist_add_bf16(float *restrict dst, const uint16_t *restrict src, int64_t n); /* dst += f32(src) */
void dist_scale(float *x, float s, int64_t n);
void dist_to_bf16(uint16_t *restrict dst, const float *restrict src, int64_t n); /* RNE */
void dist_from_bf16(float *restrict dst, const uint16_t *restrict src, int64_t n);
void dist_round_bf16(float *x, int64_t n); /* x = f32(bf16(x)) */
/* dst = (src[0] + src[1] + ... + src[k-1]) * scale, summed in that order. */
void dist_sum_k(float *restrict dst, const float *const *src, int k, int64_t n, float scale);

/* ---- ring (mpi/ring.c) over any communicator: reduce-scatter steps, then the owner
 * finishes its block (scale; bf16 rounding if an all-gather follows), then all-gather
 * steps. Block r of the buffer belongs to rank r of `comm`.
 * Pipeline: chunks of `chunk` floats, up to DIST_RING_DEPTH in flight per direction (so
 * chunk i+1 is on the wire while chunk i is reduced). */
#define DIST_RING_DEPTH 4

/* Fixed-size scratch, allocated once per communicator: DIST_RING_DEPTH chunks each. */
typedef struct dist_ring_scratch {
    int64_t chunk;
    float *tmp;
    uint16_t *sbf, *rbf;
} dist_ring_scratch;

typedef struct dist_ring {
    MPI_Comm comm;
    int rank, size, tag;
    float *buf;
    int64_t n;
    int rs_steps, ag_steps; /* size-1 or 0 each */
    float scale;
    int bf16;
    int64_t chunk; /* borrowed scratch */
    float *tmp;
    uint16_t *sbf, *rbf;
    /* state */
    int step, step_ready, finished_own;
    int64_t s_off, s_len, r_off, r_len, nch_s, nch_r, posted, done;
    MPI_Request rreq[DIST_RING_DEPTH], sreq[DIST_RING_DEPTH];
} dist_ring;

parlm_status dist_ring_scratch_alloc(dist_ring_scratch *s, int64_t chunk);
void dist_ring_scratch_free(dist_ring_scratch *s);
void dist_ring_init(dist_ring *g, const dist_ring_scratch *s, MPI_Comm comm, int kind,
                    float *buf, int64_t n, float scale, int bf16, int tag);
int dist_ring_progress(dist_ring *g);

/* ---- recursive doubling all-reduce (mpi/rd.c): n <= INT_MAX ---- */
/* Scratch that grows by powers of two (n floats, and n bf16 each way). */
typedef struct dist_rd_scratch {
    float *tmp;
    uint16_t *bf;
    int64_t cap;
} dist_rd_scratch;

typedef struct dist_rd {
    MPI_Comm comm;
    int rank, size, tag;
    float *buf;
    int64_t n;
    float scale;
    int bf16;
    float *tmp; /* n floats of scratch (or n bf16 in each of sbf, rbf) */
    uint16_t *sbf, *rbf;
    int phase, pof2, rem, newrank, mask, posted;
    MPI_Request req[2];
} dist_rd;

void dist_rd_scratch_free(dist_rd_scratch *s);
parlm_status dist_rd_init(dist_rd *g, dist_rd_scratch *s, MPI_Comm comm, float *buf, int64_t n,
                          float scale, int bf16, int tag);
int dist_rd_progress(dist_rd *g);

/* ---- shared-memory node collectives (mpi/shm.c) ----
 * Shared-memory slots: each local rank has shm_nbuf buffers of shm_chunk floats, used in
 * rotation. On nodes of up to DIST_SHM_FULL_SUM_MAX ranks a rank may deposit chunks ahead
 * of its peers until the buffers run out, so one progress call from the compute loop can
 * move up to nbuf chunks (16 MiB by default) while the peers compute; larger nodes go
 * chunk by chunk in lock step. */
/* Nodes of up to this many ranks reduce a chunk with one sync: every rank sums all
 * slots (reads (L-1) chunks from peers); larger nodes split the sum by slices and
 * copy the slices back (two syncs, about 2 chunks read from peers whatever L). */
#define DIST_SHM_FULL_SUM_MAX 2

enum dist_shm_mode {
    DIST_SHM_ALLREDUCE, /* every local rank ends with the node's reduction */
    DIST_SHM_REDUCE,    /* only the leader copies the node's sum out */
    DIST_SHM_BCAST,     /* the leader's buf to every local rank */
    DIST_SHM_RS,        /* reduce-scatter, local rank = block index (single node) */
    DIST_SHM_AG,        /* all-gather, local rank = block index (single node) */
};
/* A buffer from parlm_comm_alloc_shared: this rank's part of a shared-memory window
 * and where every local rank's part is mapped here. */
typedef struct dist_shared_buf {
    MPI_Win win; /* MPI_WIN_NULL: plain memory (single-rank node, or no window) */
    float *mine;
    float **part; /* [local_size] */
    int64_t n;
} dist_shared_buf;

/* The node as the shared-memory path sees it: its ranks and CPUs, the window and the
 * rotation of its buffers (which runs on across collectives). */
typedef struct dist_node {
    MPI_Comm local; /* the ranks of this node */
    int local_rank, local_size;
    int nodes;          /* in the whole communicator (zero-copy needs a single node) */
    int oversubscribed; /* more local ranks than online CPUs: yield while waiting */
    int node_ranks, cpus; /* of the real node: with each rank's OpenMP threads, decide
                           * at each wait whether the node is oversubscribed (dist_crowded) */
    MPI_Win win;
    int have_win;
    int64_t shm_chunk, shm_nbuf;
    float **slot;                 /* [local_size] -> shm_nbuf * shm_chunk floats each */
    _Atomic uint64_t **flag;      /* [local_size] -> arrival counter of that rank */
    _Atomic uint64_t **done;      /* [local_size] -> chunks that rank has finished reading */
    _Atomic uint64_t **red;       /* [local_size] -> chunks reduced in place (zero-copy) */
    _Atomic uint64_t **desc;      /* [local_size] -> 2 words describing that rank's op */
    dist_shared_buf *shared;      /* parlm_comm_alloc_shared buffers */
    int n_shared, cap_shared;
    const float **shm_src;        /* [local_size] scratch: the slots being summed */
    uint64_t shm_gen;             /* this rank's arrival count */
    int64_t shm_next;             /* chunks moved so far: picks the buffer of the next */
    uint64_t shm_ops;             /* small nodes: shm collectives started (descriptor slot) */
} dist_node;

typedef struct dist_shm {
    int mode;
    int zc;             /* all-reduce in place on shared buffers: peers read each other's */
    const float *peer[DIST_SHM_FULL_SUM_MAX]; /* zc: local rank j's copy of buf */
    int64_t kb;         /* zc: chunks reduced so far (k <= kb <= nk) */
    uint64_t desc[2];   /* published at the op's start: n, mode and path; shared offset */
    int dslot;          /* which of the two descriptor slots this op uses */
    int checked;        /* the peers' descriptors were compared with desc */
    float *buf;
    int64_t n;
    float scale;
    int64_t k, nk, cb; /* chunk index, chunk count, elements per chunk (per block) */
    int64_t kd;        /* small nodes: chunks deposited so far (k <= kd <= nk) */
    uint64_t base;     /* small nodes: sequence number of chunk 0 */
    int sub;           /* large nodes: position inside a chunk */
    uint64_t gen;      /* large nodes: flag generation being waited for */
} dist_shm;

/* 1 when this node's ranks times this rank's OpenMP threads exceed its CPUs: waits must
 * yield the core soon and collectives must not open parallel regions (whose idle
 * threads spin in the OpenMP runtime, holding the cores the peers need). */
int dist_crowded(const dist_node *c);
/* The per-local-rank pointer arrays (local, local_rank, local_size set). */
parlm_status dist_node_alloc(dist_node *c);
/* Collective over the node (local_size > 1; shm_chunk, shm_nbuf set): the window.
 * have_win = 0 if it cannot be made usable here (the caller votes across ranks). */
parlm_status dist_shm_setup(dist_node *c);
/* Frees the window and every shared buffer (MPI calls only if mpi_alive), then the arrays. */
void dist_node_free(dist_node *c, int mpi_alive);
void dist_shm_init(dist_shm *s, dist_node *c, int mode, float *buf, int64_t n, float scale);
int dist_shm_progress(dist_shm *s, dist_node *c);
/* PARLM_OK if the file system behind shared windows (Open MPI's osc_sm_backing_directory,
 * /dev/shm by default) has room for a window of `bytes` per local rank, or cannot be
 * asked. (Pages of a full tmpfs fault with SIGBUS when touched instead of failing the
 * allocation, so this is checked first.) */
parlm_status dist_shm_room(const dist_node *c, size_t bytes);
/* collective over the node: the window of a new shared buffer b (b->part allocated) */
parlm_status dist_shared_map(dist_node *c, dist_shared_buf *b, int64_t n);
void dist_shared_unmap(dist_shared_buf *b, int mpi_alive);
#endif
