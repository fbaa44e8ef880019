/* mpi/allreduce.c — the public collectives: argument checks and the choice of algorithm,
 * then each is handed to the request engine (mpi/engine.c) as a request; the blocking
 * forms are a start and a wait. Nothing here touches the queue or an algorithm's state. */
#include <limits.h>

#include "comm.h"

/* Automatic choice. Measured on 2 ranks of one node (parlm-bench allreduce; best call
 * of many): the shared-memory path is the fastest from 64 B to 256 KB (4 KB: 1.3x,
 * 256 KB: 1.6x MPI_Allreduce) and from 16 MB up (16 MB: 4.7x, 64 MB: 3.6x). In between
 * (1-4 MB, cache-resident) Open MPI is 15-30% faster when its single-copy (CMA) transfers
 * work; where they are disabled, as in many containers, it is 1.4x slower than shm
 * there. So a node with several ranks always uses shm. Across nodes, messages up to
 * DIST_SMALL_BYTES are latency-bound: recursive doubling takes log2(p) exchanges where
 * the hierarchical path takes two node syncs plus 2(nodes-1) ring steps (no multi-node
 * system was available to measure this threshold). */
#define DIST_SMALL_BYTES ((int64_t)16 * 1024)

static const char *const algo_names[] = {"auto", "ring", "shm", "rd", "mpi"};

const char *parlm_algo_name(unsigned algo)
{
    return algo < sizeof algo_names / sizeof algo_names[0] ? algo_names[algo] : "?";
}

static const char *kind_name(int kind)
{
    return kind == DIST_ALLREDUCE ? "parlm_allreduce"
           : kind == DIST_REDUCE_SCATTER ? "parlm_reduce_scatter"
                                         : "parlm_all_gather";
}

int dist_choose(const parlm_comm *c, int kind, int64_t n, unsigned flags)
{
    int algo = (int)(flags & PARLM_ALGO_MASK);
    if (algo == PARLM_ALGO_AUTO && kind == DIST_ALLREDUCE)
        algo = (int)c->cfg.algo;
    /* reduce-scatter / all-gather blocks belong to ranks, so shm serves them on one node */
    const dist_node *nd = &c->node;
    int shm_ok = nd->have_win && nd->local_size > 1 &&
                 (kind == DIST_ALLREDUCE ||
                  (nd->nodes == 1 && nd->shm_chunk >= nd->local_size)); /* RS: a float per block */
    if (algo == PARLM_ALGO_AUTO) {
        int small = kind == DIST_ALLREDUCE && n <= DIST_SMALL_BYTES / (int64_t)sizeof(float);
        if (shm_ok && nd->nodes == 1)
            algo = PARLM_ALGO_SHM;
        else if (small)
            algo = PARLM_ALGO_RD;
        else
            algo = shm_ok ? PARLM_ALGO_SHM : PARLM_ALGO_RING;
    }
    if (algo == PARLM_ALGO_SHM && !shm_ok) /* one rank per node, or RS/AG across nodes */
        algo = PARLM_ALGO_RING;
    return algo;
}

/* ---- argument checks ---------------------------------------------------------------- */

static parlm_status check_args(int kind, const parlm_comm *c, const float *buf, int64_t n,
                               int op, unsigned flags)
{
    const char *fn = kind_name(kind);
    if (!c)
        return parlm_error(PARLM_EINVAL, "%s: comm is NULL", fn);
    if (n < 0)
        return parlm_error(PARLM_EINVAL, "%s: n = %lld is negative", fn, (long long)n);
    if (!buf && n > 0)
        return parlm_error(PARLM_EINVAL, "%s: buf is NULL with n = %lld", fn, (long long)n);
    if (op != PARLM_REDUCE_SUM && op != PARLM_REDUCE_AVG)
        return parlm_error(PARLM_EINVAL, "%s: unknown reduction op %d", fn, op);
    if ((flags & ~(unsigned)(PARLM_ALGO_MASK | PARLM_WIRE_BF16)) ||
        (flags & PARLM_ALGO_MASK) > PARLM_ALGO_MPI)
        return parlm_error(PARLM_EINVAL, "%s: unknown flags 0x%x", fn, flags);
    if ((size_t)n > SIZE_MAX / sizeof(float))
        return parlm_error(PARLM_EINVAL, "%s: n = %lld floats overflows size_t", fn, (long long)n);
    if (c->broken != PARLM_OK)
        return parlm_error(c->broken, "%s: the communicator is unusable after an earlier failure: %s",
                           fn, c->broken_msg);
    int algo = dist_choose(c, kind, n, flags);
    if (algo == PARLM_ALGO_RD && kind != DIST_ALLREDUCE)
        return parlm_error(PARLM_EUNSUPPORTED, "%s: recursive doubling is all-reduce only", fn);
    if ((algo == PARLM_ALGO_RD || algo == PARLM_ALGO_MPI) && n > INT_MAX)
        return parlm_error(PARLM_EUNSUPPORTED, "%s: algorithm %s takes n <= INT_MAX, got %lld", fn,
                           parlm_algo_name((unsigned)algo), (long long)n);
    if (algo == PARLM_ALGO_MPI && (flags & PARLM_WIRE_BF16))
        return parlm_error(PARLM_EUNSUPPORTED, "%s: MPI's collectives cannot use a bf16 wire", fn);
    return PARLM_OK;
}

/* Checks, then builds the collective and hands it to the engine. */
static parlm_status start(int kind, parlm_comm *c, float *buf, int64_t n, int op, unsigned flags,
                          parlm_request **req)
{
    if (!req)
        return parlm_error(PARLM_EINVAL, "%s_start: req is NULL", kind_name(kind));
    *req = NULL;
    parlm_status st = check_args(kind, c, buf, n, op, flags);
    if (st != PARLM_OK)
        return st;
    parlm_request *r = dist_submit(c, kind, dist_choose(c, kind, n, flags),
                                   (flags & PARLM_WIRE_BF16) != 0, buf, n,
                                   op == PARLM_REDUCE_AVG ? 1.0f / (float)c->size : 1.0f);
    if (!r)
        return parlm_error(PARLM_ENOMEM, "%s: cannot allocate a request", kind_name(kind));
    *req = r;
    return PARLM_OK;
}

/* ---- public ------------------------------------------------------------------------------ */

parlm_status parlm_allreduce_start(parlm_comm *c, float *buf, int64_t n, parlm_reduce_op op,
                                   unsigned flags, parlm_request **req)
{
    return start(DIST_ALLREDUCE, c, buf, n, (int)op, flags, req);
}

parlm_status parlm_reduce_scatter_start(parlm_comm *c, float *buf, int64_t n, parlm_reduce_op op,
                                        unsigned flags, parlm_request **req)
{
    return start(DIST_REDUCE_SCATTER, c, buf, n, (int)op, flags, req);
}

parlm_status parlm_all_gather_start(parlm_comm *c, float *buf, int64_t n, unsigned flags,
                                    parlm_request **req)
{
    return start(DIST_ALL_GATHER, c, buf, n, PARLM_REDUCE_SUM, flags, req);
}

parlm_status parlm_allreduce(parlm_comm *c, float *buf, int64_t n, parlm_reduce_op op,
                             unsigned flags)
{
    parlm_request *r;
    parlm_status st = start(DIST_ALLREDUCE, c, buf, n, (int)op, flags, &r);
    return st != PARLM_OK ? st : parlm_request_wait(&r);
}

parlm_status parlm_reduce_scatter(parlm_comm *c, float *buf, int64_t n, parlm_reduce_op op,
                                  unsigned flags)
{
    parlm_request *r;
    parlm_status st = start(DIST_REDUCE_SCATTER, c, buf, n, (int)op, flags, &r);
    return st != PARLM_OK ? st : parlm_request_wait(&r);
}

parlm_status parlm_all_gather(parlm_comm *c, float *buf, int64_t n, unsigned flags)
{
    parlm_request *r;
    parlm_status st = start(DIST_ALL_GATHER, c, buf, n, PARLM_REDUCE_SUM, flags, &r);
    return st != PARLM_OK ? st : parlm_request_wait(&r);
}
