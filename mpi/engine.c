/* mpi/engine.c — the request engine: every collective, blocking or not, is a request in
 * its communicator's queue, and the queue runs them strictly one after another, so they
 * complete in the order they were started and share one set of scratch buffers. Here a
 * request's algorithm is driven (and the algorithms composed: node shm -> leaders' ring ->
 * node broadcast); the public calls above only check arguments and submit. Progress
 * happens only when the caller tests or waits (see dist.h for why no progress thread). */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm.h"

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
    if (op->kind != DIST_ALLREDUCE || c->node.nodes == 1) {
        if (op->stage == 0) {
            int mode = op->kind == DIST_ALLREDUCE        ? DIST_SHM_ALLREDUCE
                       : op->kind == DIST_REDUCE_SCATTER ? DIST_SHM_RS
                                                         : DIST_SHM_AG;
            dist_shm_init(&op->shm, &c->node, mode, op->buf, op->n, op->scale);
            op->stage = 1;
        }
        return dist_shm_progress(&op->shm, &c->node);
    }
    if (op->stage == 0) {
        dist_shm_init(&op->shm, &c->node, DIST_SHM_REDUCE, op->buf, op->n, 1.0f);
        op->stage = 1;
    }
    if (op->stage == 1) {
        if ((rc = dist_shm_progress(&op->shm, &c->node)) != DIST_DONE)
            return rc;
        if (c->leaders != MPI_COMM_NULL)
            dist_ring_init(&op->ring, &c->ring, c->leaders, DIST_ALLREDUCE, op->buf, op->n, op->scale,
                           op->bf16, op->tag);
        op->stage = 2;
    }
    if (op->stage == 2) {
        if (c->leaders != MPI_COMM_NULL && (rc = dist_ring_progress(&op->ring)) != DIST_DONE)
            return rc;
        dist_shm_init(&op->shm, &c->node, DIST_SHM_BCAST, op->buf, op->n, 1.0f);
        op->stage = 3;
    }
    return dist_shm_progress(&op->shm, &c->node);
}

static int op_progress(parlm_comm *c, dist_op *op)
{
    if (op->n == 0)
        return DIST_DONE;
    if (!op->started) {
        op->started = 1;
        if (op->algo == PARLM_ALGO_RING)
            dist_ring_init(&op->ring, &c->ring, c->comm, op->kind, op->buf, op->n, op->scale, op->bf16,
                           op->tag);
        if (op->algo == PARLM_ALGO_RD) {
            parlm_status st = dist_rd_init(&op->rd, &c->rd, c->comm, op->buf, op->n, op->scale,
                                           op->bf16, op->tag);
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

parlm_request *dist_submit(parlm_comm *c, int kind, int algo, int bf16, float *buf, int64_t n,
                           float scale)
{
    parlm_request *r = new_request(c);
    if (!r)
        return NULL;
    r->comm = c;
    r->state = DIST_REQ_QUEUED;
    r->status = PARLM_OK;
    r->next = NULL;
    dist_op *o = &r->op;
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->algo = algo;
    o->bf16 = bf16;
    o->tag = (int)(c->seq++ % 32767); /* MPI guarantees tags up to 32767 */
    o->buf = buf;
    o->n = n;
    o->scale = scale;
    o->mreq = MPI_REQUEST_NULL;
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    queue_progress(c); /* get the first messages on the wire now */
    return r;
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
    if (n < (dist_crowded(&c->node) ? 16u : 4096u))
        return;
    if (n < (1u << 20)) {
        sched_yield();
    } else {
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
        *spins = 1u << 20; /* no wrap-around back to spinning */
    }
}

/* ---- public: test, wait and progress work on requests of every kind ---------------------- */

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
