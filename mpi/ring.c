/* mpi/ring.c — ring reduce-scatter / all-gather / all-reduce over any communicator, as a
 * resumable state machine. Each of the p-1 reduce-scatter steps sends one block to the
 * right neighbour and reduces the block arriving from the left; blocks travel in chunks
 * with up to DIST_RING_DEPTH in flight, so the receive of chunk i+1 is posted (and on the
 * wire) before chunk i is reduced. After the reduce-scatter rank r holds block r; the
 * all-gather steps pass the finished blocks around the ring the same way.
 * Step s of reduce-scatter: send block (r-s-1) mod p, receive and reduce block (r-s-2);
 * step s of all-gather: send block (r-s) mod p, receive block (r-s-1). */
#include <stdlib.h>
#include <string.h>

#include "algo.h"

static int mod(int a, int p) { return ((a % p) + p) % p; }

parlm_status dist_ring_scratch_alloc(dist_ring_scratch *s, int64_t chunk)
{
    size_t ch = (size_t)chunk * DIST_RING_DEPTH;
    s->chunk = chunk;
    s->tmp = malloc(ch * sizeof(float));
    s->sbf = malloc(ch * sizeof(uint16_t));
    s->rbf = malloc(ch * sizeof(uint16_t));
    if (!s->tmp || !s->sbf || !s->rbf)
        return parlm_error(PARLM_ENOMEM, "ring: cannot allocate %d chunks of %lld floats",
                           DIST_RING_DEPTH, (long long)chunk);
    return PARLM_OK;
}

void dist_ring_scratch_free(dist_ring_scratch *s)
{
    free(s->tmp);
    free(s->sbf);
    free(s->rbf);
    s->tmp = NULL;
    s->sbf = s->rbf = NULL;
}

void dist_ring_init(dist_ring *g, const dist_ring_scratch *s, MPI_Comm comm, int kind,
                    float *buf, int64_t n, float scale, int bf16, int tag)
{
    memset(g, 0, sizeof *g);
    g->comm = comm;
    MPI_Comm_rank(comm, &g->rank);
    MPI_Comm_size(comm, &g->size);
    g->tag = tag;
    g->buf = buf;
    g->n = n;
    g->rs_steps = kind != DIST_ALL_GATHER ? g->size - 1 : 0;
    g->ag_steps = kind != DIST_REDUCE_SCATTER ? g->size - 1 : 0;
    g->scale = scale;
    g->bf16 = bf16;
    g->chunk = s->chunk;
    g->tmp = s->tmp;
    g->sbf = s->sbf;
    g->rbf = s->rbf;
    for (int i = 0; i < DIST_RING_DEPTH; i++)
        g->rreq[i] = g->sreq[i] = MPI_REQUEST_NULL;
}

static int64_t nchunks(int64_t len, int64_t chunk) { return (len + chunk - 1) / chunk; }

static void setup_step(dist_ring *g)
{
    int p = g->size, r = g->rank, sb, rb;
    if (g->step < g->rs_steps) {
        sb = mod(r - g->step - 1, p);
        rb = mod(r - g->step - 2, p);
    } else {
        int t = g->step - g->rs_steps;
        sb = mod(r - t, p);
        rb = mod(r - t - 1, p);
    }
    parlm_block_range(g->n, p, sb, &g->s_off, &g->s_len);
    parlm_block_range(g->n, p, rb, &g->r_off, &g->r_len);
    g->nch_s = nchunks(g->s_len, g->chunk);
    g->nch_r = nchunks(g->r_len, g->chunk);
    g->posted = g->done = 0;
    g->step_ready = 1;
}

/* The owner's block between the two halves: average, and for a bf16 all-gather round
 * it to what the others will receive, so every rank ends with the same bits. */
static void finish_own(dist_ring *g)
{
    int64_t off, len;
    parlm_block_range(g->n, g->size, g->rank, &off, &len);
    if (g->scale != 1.0f)
        dist_scale(g->buf + off, g->scale, len);
    if (g->bf16 && g->ag_steps > 0)
        dist_round_bf16(g->buf + off, len);
    g->finished_own = 1;
}

/* Posts the receive and send of chunk g->posted; DIST_PENDING if its send slot is still
 * busy with the chunk DIST_RING_DEPTH before it. */
static int post_chunk(dist_ring *g)
{
    int64_t i = g->posted, C = g->chunk;
    int slot = (int)(i % DIST_RING_DEPTH), flag = 1, err;
    int left = mod(g->rank - 1, g->size), right = mod(g->rank + 1, g->size);
    int reducing = g->step < g->rs_steps;
    if (i < g->nch_s && g->sreq[slot] != MPI_REQUEST_NULL) {
        err = MPI_Test(&g->sreq[slot], &flag, MPI_STATUS_IGNORE);
        if (err != MPI_SUCCESS)
            return dist_mpi_error(err, "MPI_Test(ring send)");
        if (!flag)
            return DIST_PENDING;
    }
    if (i < g->nch_r) {
        int64_t off = i * C, len = g->r_len - off < C ? g->r_len - off : C;
        if (g->bf16)
            err = MPI_Irecv(g->rbf + slot * C, (int)len, MPI_UINT16_T, left, g->tag, g->comm,
                            &g->rreq[slot]);
        else
            err = MPI_Irecv(reducing ? g->tmp + slot * C : g->buf + g->r_off + off, (int)len,
                            MPI_FLOAT, left, g->tag, g->comm, &g->rreq[slot]);
        if (err != MPI_SUCCESS)
            return dist_mpi_error(err, "MPI_Irecv(ring)");
    }
    if (i < g->nch_s) {
        int64_t off = i * C, len = g->s_len - off < C ? g->s_len - off : C;
        const float *src = g->buf + g->s_off + off;
        if (g->bf16) {
            dist_to_bf16(g->sbf + slot * C, src, len);
            err = MPI_Isend(g->sbf + slot * C, (int)len, MPI_UINT16_T, right, g->tag, g->comm,
                            &g->sreq[slot]);
        } else {
            err = MPI_Isend(src, (int)len, MPI_FLOAT, right, g->tag, g->comm, &g->sreq[slot]);
        }
        if (err != MPI_SUCCESS)
            return dist_mpi_error(err, "MPI_Isend(ring)");
    }
    g->posted++;
    return DIST_DONE;
}

/* Completes chunk g->done: reduce it (reduce-scatter) or unpack it (bf16 all-gather). */
static int finish_chunk(dist_ring *g)
{
    int64_t i = g->done, C = g->chunk;
    int slot = (int)(i % DIST_RING_DEPTH), flag = 1;
    if (i < g->nch_r) {
        int err = MPI_Test(&g->rreq[slot], &flag, MPI_STATUS_IGNORE);
        if (err != MPI_SUCCESS)
            return dist_mpi_error(err, "MPI_Test(ring receive)");
        if (!flag)
            return DIST_PENDING;
        int64_t off = i * C, len = g->r_len - off < C ? g->r_len - off : C;
        float *dst = g->buf + g->r_off + off;
        if (g->step < g->rs_steps) {
            if (g->bf16)
                dist_add_bf16(dst, g->rbf + slot * C, len);
            else
                dist_add(dst, g->tmp + slot * C, len);
        } else if (g->bf16) {
            dist_from_bf16(dst, g->rbf + slot * C, len);
        }
    }
    g->done++;
    return DIST_DONE;
}

int dist_ring_progress(dist_ring *g)
{
    for (;;) {
        if (!g->finished_own && g->step == g->rs_steps)
            finish_own(g);
        if (g->step == g->rs_steps + g->ag_steps)
            return DIST_DONE;
        if (!g->step_ready)
            setup_step(g);
        int64_t nch = g->nch_s > g->nch_r ? g->nch_s : g->nch_r;
        while (g->posted < nch && g->posted - g->done < DIST_RING_DEPTH) {
            int rc = post_chunk(g);
            if (rc != DIST_DONE)
                return rc;
        }
        if (g->done < nch) {
            int rc = finish_chunk(g);
            if (rc != DIST_DONE)
                return rc;
            continue;
        }
        /* every chunk of this step arrived; its sends must finish before the next step
         * reuses the send slots (and, for p = 2, overwrites the block they read) */
        int flag = 1;
        int err = MPI_Testall(DIST_RING_DEPTH, g->sreq, &flag, MPI_STATUSES_IGNORE);
        if (err != MPI_SUCCESS)
            return dist_mpi_error(err, "MPI_Testall(ring sends)");
        if (!flag)
            return DIST_PENDING;
        g->step++;
        g->step_ready = 0;
    }
}
