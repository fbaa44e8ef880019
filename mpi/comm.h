/* mpi/comm.h — internal: the parlm_comm, its requests and the engine that runs them.
 * mpi/ is layered; each layer calls only the ones below it:
 *   comm.c, allreduce.c  public API (parlm/dist.h): communicators, shared buffers,
 *                        argument checks, the choice of algorithm, blocking forms
 *   engine.c             requests: the queue, one collective's progress (including the
 *                        hierarchical composition node shm -> leaders' ring -> node
 *                        broadcast, and the MPI path), test / wait / drain
 *   ring.c, rd.c, shm.c  algorithms (mpi/algo.h): state machines over their own scratch,
 *                        knowing nothing of requests, of the parlm_comm or of each other
 *   reduce.c             arithmetic and block ranges (and dist_mpi_error, in algo.h) */
#ifndef PARLM_MPI_COMM_H
#define PARLM_MPI_COMM_H
#include "algo.h"

/* Defaults of parlm_comm_config's fields left 0. */
#define DIST_RING_CHUNK_DEFAULT (64 * 1024)
#define DIST_SHM_CHUNK_DEFAULT (64 * 1024)
#define DIST_SHM_NBUF_DEFAULT 64

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

struct parlm_request {
    parlm_request *next; /* in the comm's queue or free list */
    parlm_comm *comm;
    int state;
    parlm_status status;
    char msg[256]; /* error message, re-raised on the thread that tests / waits */
    dist_op op;
};

struct parlm_comm {
    MPI_Comm comm, leaders; /* leaders: MPI_COMM_NULL on non-leaders */
    int rank, size, node_index;
    parlm_comm_config cfg; /* as given, 0 fields filled with the defaults */
    dist_node node;        /* node layout, shared-memory window and buffers */
    dist_ring_scratch ring;
    dist_rd_scratch rd;
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
/* ranks_per_node > 0 groups consecutive ranks into fake nodes of that size instead of
 * asking MPI which ranks share memory (tests of the hierarchical path on one machine).
 * cfg NULL: the defaults. */
parlm_status dist_comm_create(parlm_comm **out, MPI_Comm base, int ranks_per_node,
                              const parlm_comm_config *cfg);

/* ---- mpi/allreduce.c ---- */
/* The algorithm a collective of this kind, size and flags runs (never AUTO). */
int dist_choose(const parlm_comm *c, int kind, int64_t n, unsigned flags);

/* ---- mpi/engine.c ---- */
/* Queues a collective (arguments already checked, algorithm chosen) and starts it if the
 * queue was empty. NULL: out of memory. */
parlm_request *dist_submit(parlm_comm *c, int kind, int algo, int bf16, float *buf, int64_t n,
                           float scale);
/* Drives the queue until it is empty (before free, and before a shared buffer goes). */
parlm_status dist_drain(parlm_comm *c);
#endif
