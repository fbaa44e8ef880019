/* mpi/comm.h — internal: the parlm_comm structure and the collective algorithms.
 * Every algorithm is a resumable state machine: its progress function advances as far
 * as it can without blocking and returns DIST_PENDING, DIST_DONE or a negative
 * parlm_status. Blocking calls, nonblocking requests and the hierarchical composition
 * (node shm -> leaders' ring -> node broadcast) all drive the same machines. */
#ifndef PARLM_MPI_COMM_H
#define PARLM_MPI_COMM_H
#include <mpi.h>
#include <stdatomic.h>
#include <stdint.h>

#include "parlm/dist.h"

#define DIST_PENDING 0
#define DIST_DONE 1

/* Ring pipeline: chunks of DIST_RING_CHUNK floats, up to DIST_RING_DEPTH in flight per
 * direction (so chunk i+1 is on the wire while chunk i is reduced). */
#define DIST_RING_DEPTH 4
#define DIST_RING_CHUNK_DEFAULT (64 * 1024)
/* Shared-memory slots: each local rank has DIST_SHM_NBUF buffers of shm_chunk floats,
 * used in rotation. On nodes of up to DIST_SHM_FULL_SUM_MAX ranks a rank may deposit
 * chunks ahead of its peers until the buffers run out, so one progress call from the
 * compute loop can move up to nbuf chunks (16 MiB by default) while the peers compute;
 * larger nodes go chunk by chunk in lock step. */
#define DIST_SHM_CHUNK_DEFAULT (64 * 1024)
#define DIST_SHM_NBUF_DEFAULT 64
#define DIST_SHM_NBUF_MAX 4096
/* Nodes of up to this many ranks reduce a chunk with one sync: every rank sums all
 * slots (reads (L-1) chunks from peers); larger nodes split the sum by slices and
 * copy the slices back (two syncs, about 2 chunks read from peers whatever L). */
#define DIST_SHM_FULL_SUM_MAX 2

enum dist_kind { DIST_ALLREDUCE = 0, DIST_REDUCE_SCATTER = 1, DIST_ALL_GATHER = 2 };

/* ---- arithmetic (mpi/reduce.c): plain loops the compiler vectorizes ---- */
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
 * steps. Block r of the buffer belongs to rank r of `comm`. */
typedef struct dist_ring {
    MPI_Comm comm;
    int rank, size, tag;
    float *buf;
    int64_t n;
    int rs_steps, ag_steps; /* size-1 or 0 each */
    float scale;
    int bf16;
    /* scratch owned by the parlm_comm: DIST_RING_DEPTH chunks each */
    int64_t chunk;
    float *tmp;
    uint16_t *sbf, *rbf;
    /* state */
    int step, step_ready, finished_own;
    int64_t s_off, s_len, r_off, r_len, nch_s, nch_r, posted, done;
    MPI_Request rreq[DIST_RING_DEPTH], sreq[DIST_RING_DEPTH];
} dist_ring;

/* ---- recursive doubling all-reduce (mpi/rd.c): n <= INT_MAX ---- */
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

/* ---- shared-memory node collectives (mpi/shm.c) ---- */
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

/* One queued collective. stage: algorithm-specific sequencing (hierarchical phases). */
typedef struct dist_op {
    int kind, algo, bf16, tag, stage, started;
    float *buf;
    int64_t n;
    float scale;
    dist_ring ring;
    dist_rd rd;
    dist_shm shm;
    MPI_Request mreq;
} dist_op;

enum dist_req_state { DIST_REQ_FREE, DIST_REQ_QUEUED, DIST_REQ_DONE };

/* 1 when this node's ranks times this rank's OpenMP threads exceed its CPUs: waits must
 * yield the core soon and collectives must not open parallel regions (whose idle
 * threads spin in the OpenMP runtime, holding the cores the peers need). */
int dist_crowded(const parlm_comm *c);

struct parlm_request {
    parlm_request *next; /* in the comm's queue or free list */
    parlm_comm *comm;
    int state;
    parlm_status status;
    char msg[256]; /* error message, re-raised on the thread that tests / waits */
    dist_op op;
};

struct parlm_comm {
    MPI_Comm comm, local, leaders; /* leaders: MPI_COMM_NULL on non-leaders */
    int rank, size, local_rank, local_size, node, nodes;
    int oversubscribed; /* more local ranks than online CPUs: yield while waiting */
    int node_ranks, cpus; /* of the real node: with each rank's OpenMP threads, decide
                           * at each wait whether the node is oversubscribed (dist_crowded) */
    unsigned env_algo;  /* PARLM_ALLREDUCE, or PARLM_ALGO_AUTO */
    /* shared-memory window (local_size > 1) */
    MPI_Win win;
    int have_win;
    int64_t shm_chunk, shm_nbuf;
    float **slot;                 /* [local_size] -> 2 * shm_chunk floats each */
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
    /* ring scratch (fixed size) */
    int64_t ring_chunk;
    float *ring_tmp;
    uint16_t *ring_sbf, *ring_rbf;
    /* recursive-doubling scratch, grows by powers of two */
    float *rd_tmp;
    uint16_t *rd_bf;
    int64_t rd_cap;
    /* MPI path: per-rank counts and displacements; agree-check scratch */
    int *counts, *displs;
    uint64_t *agree;
    /* requests */
    parlm_request *head, *tail, *free_reqs;
    parlm_request **owned; /* every request allocated, freed with the comm */
    int n_owned, cap_owned;
    unsigned seq;
    parlm_status broken; /* != OK once a collective failed; broken_msg says why */
    char broken_msg[256];
};

/* ---- mpi/comm.c ---- */
/* MPI error code -> PARLM_ESYSTEM with "what: <MPI's error string>". */
parlm_status dist_mpi_error(int err, const char *what);
/* ranks_per_node > 0 groups consecutive ranks into fake nodes of that size instead of
 * asking MPI which ranks share memory (tests of the hierarchical path on one machine). */
parlm_status dist_comm_create(parlm_comm **out, MPI_Comm base, int ranks_per_node);
/* PARLM_ALLREDUCE value -> algorithm; -1 if unknown. */
int dist_parse_algo(const char *s);

/* ---- mpi/ring.c ---- */
void dist_ring_init(dist_ring *g, parlm_comm *c, MPI_Comm comm, int kind, float *buf,
                    int64_t n, float scale, int bf16, int tag);
int dist_ring_progress(dist_ring *g);

/* ---- mpi/rd.c ---- */
parlm_status dist_rd_init(dist_rd *g, parlm_comm *c, float *buf, int64_t n, float scale,
                          int bf16, int tag);
int dist_rd_progress(dist_rd *g);

/* ---- mpi/shm.c ---- */
parlm_status dist_shm_setup(parlm_comm *c);
void dist_shm_teardown(parlm_comm *c);
void dist_shm_init(dist_shm *s, parlm_comm *c, int mode, float *buf, int64_t n, float scale);
void dist_shared_release(parlm_comm *c, int mpi_alive); /* every parlm_comm_alloc_shared buffer */
/* 1 if [buf, buf + n) lies in a shared buffer: peer[j] = local rank j's copy, *offset =
 * its offset (floats) in the allocation */
int dist_shared_find(const parlm_comm *c, const float *buf, int64_t n, const float **peer,
                     int64_t *offset);
/* PARLM_OK if the file system behind shared windows (Open MPI's osc_sm_backing_directory,
 * /dev/shm by default) has room for a window of `bytes` per local rank, or cannot be
 * asked. (Pages of a full tmpfs fault with SIGBUS when touched instead of failing the
 * allocation, so this is checked first.) */
parlm_status dist_shm_room(const parlm_comm *c, size_t bytes);
/* collective over the node: the window of a new shared buffer b (b->part allocated) */
parlm_status dist_shared_map(parlm_comm *c, dist_shared_buf *b, int64_t n);
void dist_shared_unmap(dist_shared_buf *b, int mpi_alive);
int dist_shm_progress(dist_shm *s, parlm_comm *c);

/* ---- mpi/allreduce.c ---- */
/* The algorithm a collective of this kind, size and flags runs (never AUTO). */
int dist_choose(const parlm_comm *c, int kind, int64_t n, unsigned flags);
/* Drives the queue until it is empty (used by free). */
parlm_status dist_drain(parlm_comm *c);
#endif
