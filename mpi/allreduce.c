/* mpi/allreduce.c — the public collectives: argument checks, the choice of algorithm,
 * and the per-communicator queue of requests. Every collective, blocking or not, is a
 * request; the queue runs them strictly one after another, so they complete in the
 * order they were started and share one set of scratch buffers. Progress happens only
 * when the caller tests or waits (see dist.h for why there is no progress thread). */
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../base/error.h"
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
        algo = (int)c->env_algo;
    /* reduce-scatter / all-gather blocks belong to ranks, so shm serves them on one node */
    int shm_ok = c->have_win && c->local_size > 1 &&
                 (kind == DIST_ALLREDUCE ||
                  (c->nodes == 1 && c->shm_chunk >= c->local_size)); /* RS: a float per block */
    if (algo == PARLM_ALGO_AUTO) {
        int small = kind == DIST_ALLREDUCE && n <= DIST_SMALL_BYTES / (int64_t)sizeof(float);
        if (shm_ok && c->nodes == 1)
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

/* ---- one collective's progress --------------------------------------------------------- */

static int mpi_path(parlm_comm *c, dist_op *op)
{
    int err = MPI_SUCCESS, flag = 0;
    int64_t off = 0, len = op->n;
    if (op->kind != DIST_ALLREDUCE)
        parlm_block_range(op->n, c->size, c->rank, &off, &len);
    if (op->stage == 0) {
        if (op->kind != DIST_ALLREDUCE)
            for (int r = 0; r < c->size; r++) {
                int64_t o, l;
                parlm_block_range(op->n, c->size, r, &o, &l);
                c->counts[r] = (int)l;
                c->displs[r] = (int)o;
            }
        if (op->kind == DIST_ALLREDUCE)
            err = MPI_Iallreduce(MPI_IN_PLACE, op->buf, (int)op->n, MPI_FLOAT, MPI_SUM, c->comm,
                                 &op->mreq);
        else if (op->kind == DIST_REDUCE_SCATTER) /* result lands at buf[0 .. len) */
            err = MPI_Ireduce_scatter(MPI_IN_PLACE, op->buf, c->counts, MPI_FLOAT, MPI_SUM,
                                      c->comm, &op->mreq);
        else
            err = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, op->buf, c->counts,
                                  c->displs, MPI_FLOAT, c->comm, &op->mreq);
        if (err != MPI_SUCCESS)
            return dist_mpi_error(err, "MPI_Iallreduce/Ireduce_scatter/Iallgatherv");
        op->stage = 1;
    }
    err = MPI_Test(&op->mreq, &flag, MPI_STATUS_IGNORE);
    if (err != MPI_SUCCESS)
        return dist_mpi_error(err, "MPI_Test(MPI collective)");
    if (!flag)
        return DIST_PENDING;
    if (op->kind == DIST_REDUCE_SCATTER && off > 0)
        memmove(op->buf + off, op->buf, (size_t)len * sizeof(float));
    if (op->kind != DIST_ALL_GATHER && op->scale != 1.0f)
        dist_scale(op->buf + off, op->scale, len);
    return DIST_DONE;
}

/* shm all-reduce: one node -> node all-reduce; several -> node reduce to the leader,
 * leaders' ring, node broadcast */
static int shm_path(parlm_comm *c, dist_op *op)
{
    int rc;
    if (op->kind != DIST_ALLREDUCE || c->nodes == 1) {
        if (op->stage == 0) {
            int mode = op->kind == DIST_ALLREDUCE        ? DIST_SHM_ALLREDUCE
                       : op->kind == DIST_REDUCE_SCATTER ? DIST_SHM_RS
                                                         : DIST_SHM_AG;
            dist_shm_init(&op->shm, c, mode, op->buf, op->n, op->scale);
            op->stage = 1;
        }
        return dist_shm_progress(&op->shm, c);
    }
    if (op->stage == 0) {
        dist_shm_init(&op->shm, c, DIST_SHM_REDUCE, op->buf, op->n, 1.0f);
        op->stage = 1;
    }
    if (op->stage == 1) {
        if ((rc = dist_shm_progress(&op->shm, c)) != DIST_DONE)
            return rc;
        if (c->leaders != MPI_COMM_NULL)
            dist_ring_init(&op->ring, c, c->leaders, DIST_ALLREDUCE, op->buf, op->n, op->scale,
                           op->bf16, op->tag);
        op->stage = 2;
    }
    if (op->stage == 2) {
        if (c->leaders != MPI_COMM_NULL && (rc = dist_ring_progress(&op->ring)) != DIST_DONE)
            return rc;
        dist_shm_init(&op->shm, c, DIST_SHM_BCAST, op->buf, op->n, 1.0f);
        op->stage = 3;
    }
    return dist_shm_progress(&op->shm, c);
}

static int op_progress(parlm_comm *c, dist_op *op)
{
    if (op->n == 0)
        return DIST_DONE;
    if (!op->started) {
        op->started = 1;
        if (op->algo == PARLM_ALGO_RING)
            dist_ring_init(&op->ring, c, c->comm, op->kind, op->buf, op->n, op->scale, op->bf16,
                           op->tag);
        if (op->algo == PARLM_ALGO_RD) {
            parlm_status st = dist_rd_init(&op->rd, c, op->buf, op->n, op->scale, op->bf16, op->tag);
            if (st != PARLM_OK)
                return st;
        }
    }
    switch (op->algo) {
    case PARLM_ALGO_RING: return dist_ring_progress(&op->ring);
    case PARLM_ALGO_RD: return dist_rd_progress(&op->rd);
    case PARLM_ALGO_SHM: return shm_path(c, op);
    default: return mpi_path(c, op);
    }
}

/* ---- the queue ------------------------------------------------------------------------- */

static void finish(parlm_comm *c, parlm_request *r, parlm_status st, const char *msg)
{
    r->status = st;
    snprintf(r->msg, sizeof r->msg, "%.200s", st == PARLM_OK ? "" : msg);
    r->state = DIST_REQ_DONE;
    c->head = r->next;
    if (!c->head)
        c->tail = NULL;
    r->next = NULL;
}

/* Advances the head of the queue, and the next ones as the head completes. A failure
 * breaks the communicator (a collective stopped half way cannot be resumed), and fails
 * everything queued behind it. */
static void queue_progress(parlm_comm *c)
{
    while (c->head) {
        parlm_request *r = c->head;
        if (c->broken != PARLM_OK) {
            char msg[256];
            snprintf(msg, sizeof msg, "not run: an earlier collective failed: %.200s",
                     c->broken_msg);
            finish(c, r, c->broken, msg);
            continue;
        }
        int rc = op_progress(c, &r->op);
        if (rc == DIST_PENDING)
            return;
        if (rc < 0) {
            c->broken = (parlm_status)rc;
            snprintf(c->broken_msg, sizeof c->broken_msg, "%s", parlm_last_error());
            finish(c, r, (parlm_status)rc, c->broken_msg);
        } else {
            finish(c, r, PARLM_OK, "");
        }
    }
}

static parlm_request *new_request(parlm_comm *c)
{
    parlm_request *r = c->free_reqs;
    if (r) {
        c->free_reqs = r->next;
        return r;
    }
    if (c->n_owned == c->cap_owned) {
        int cap = c->cap_owned ? 2 * c->cap_owned : 16;
        parlm_request **o = realloc(c->owned, (size_t)cap * sizeof *o);
        if (!o)
            return NULL;
        c->owned = o;
        c->cap_owned = cap;
    }
    r = calloc(1, sizeof *r);
    if (r)
        c->owned[c->n_owned++] = r;
    return r;
}

static parlm_status start(int kind, parlm_comm *c, float *buf, int64_t n, int op, unsigned flags,
                          parlm_request **req)
{
    if (!req)
        return parlm_error(PARLM_EINVAL, "%s_start: req is NULL", kind_name(kind));
    *req = NULL;
    parlm_status st = check_args(kind, c, buf, n, op, flags);
    if (st != PARLM_OK)
        return st;
    parlm_request *r = new_request(c);
    if (!r)
        return parlm_error(PARLM_ENOMEM, "%s: cannot allocate a request", kind_name(kind));
    r->comm = c;
    r->state = DIST_REQ_QUEUED;
    r->status = PARLM_OK;
    r->next = NULL;
    dist_op *o = &r->op;
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->algo = dist_choose(c, kind, n, flags);
    o->bf16 = (flags & PARLM_WIRE_BF16) != 0;
    o->tag = (int)(c->seq++ % 32767); /* MPI guarantees tags up to 32767 */
    o->buf = buf;
    o->n = n;
    o->scale = op == PARLM_REDUCE_AVG ? 1.0f / (float)c->size : 1.0f;
    o->mreq = MPI_REQUEST_NULL;
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    queue_progress(c); /* get the first messages on the wire now */
    *req = r;
    return PARLM_OK;
}

static parlm_status release(parlm_request **req)
{
    parlm_request *r = *req;
    parlm_comm *c = r->comm;
    parlm_status st = r->status;
    if (st != PARLM_OK)
        parlm_error(st, "%s", r->msg);
    r->state = DIST_REQ_FREE;
    r->next = c->free_reqs;
    c->free_reqs = r;
    *req = NULL;
    return st;
}

/* Waiting spins on progress, as MPI does, but only briefly: then it yields the core on
 * every poll (cheap when nothing else wants it), and after about a second of waiting it
 * sleeps 50 us per poll. A crowded node (more ranks x threads than CPUs) yields almost
 * at once: a spinning rank would hold the core its peer needs to get to the collective,
 * which made an all-reduce take a whole scheduler slice (~10 ms) whatever its size. */
static void idle(const parlm_comm *c, unsigned *spins)
{
    unsigned n = ++*spins;
    if (n < (dist_crowded(c) ? 16u : 4096u))
        return;
    if (n < (1u << 20)) {
        sched_yield();
    } else {
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
        *spins = 1u << 20; /* no wrap-around back to spinning */
    }
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

parlm_status parlm_request_test(parlm_request **req, int *done)
{
    if (!req || !done)
        return parlm_error(PARLM_EINVAL, "parlm_request_test: NULL argument");
    *done = 1;
    if (!*req)
        return PARLM_OK;
    if ((*req)->state == DIST_REQ_FREE)
        return parlm_error(PARLM_EINVAL, "parlm_request_test: request already completed");
    queue_progress((*req)->comm);
    if ((*req)->state == DIST_REQ_QUEUED) {
        *done = 0;
        return PARLM_OK;
    }
    return release(req);
}

parlm_status parlm_request_wait(parlm_request **req)
{
    if (!req)
        return parlm_error(PARLM_EINVAL, "parlm_request_wait: req is NULL");
    if (!*req)
        return PARLM_OK;
    parlm_request *r = *req;
    if (r->state == DIST_REQ_FREE)
        return parlm_error(PARLM_EINVAL, "parlm_request_wait: request already completed");
    unsigned spins = 0;
    for (;;) {
        queue_progress(r->comm);
        if (r->state != DIST_REQ_QUEUED)
            break;
        idle(r->comm, &spins);
    }
    return release(req);
}

parlm_status parlm_comm_progress(parlm_comm *c)
{
    if (!c)
        return parlm_error(PARLM_EINVAL, "parlm_comm_progress: comm is NULL");
    queue_progress(c);
    return PARLM_OK;
}

parlm_status dist_drain(parlm_comm *c)
{
    unsigned spins = 0;
    for (;;) {
        queue_progress(c);
        if (!c->head)
            break;
        idle(c, &spins);
    }
    return PARLM_OK;
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
