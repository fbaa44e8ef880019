/* mpi/rd.c — recursive-doubling all-reduce for latency-bound (small) messages: log2(p)
 * rounds, each exchanging the whole buffer with the partner rank^mask and adding.
 * With p not a power of two, the first 2*rem ranks pair up: even ranks hand their data
 * to the odd neighbour, sit out, and get the result back at the end.
 * Both partners compute a + b from the same two operands (rounded to bf16 first when
 * that is the wire format), and f32 addition commutes, so every rank ends bit-identical. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "algo.h"

enum { RD_FOLD_IN, RD_ROUNDS, RD_FOLD_OUT, RD_DONE };

/* Grows the scratch to hold n floats (and n bf16 each way), by powers of two, so a run
 * allocates once per size class, not once per call. */
static parlm_status rd_scratch(dist_rd_scratch *c, int64_t n)
{
    if (n <= c->cap)
        return PARLM_OK;
    int64_t cap = 1024;
    while (cap < n)
        cap *= 2;
    float *t = malloc((size_t)cap * sizeof(float));
    uint16_t *b = malloc((size_t)cap * 2 * sizeof(uint16_t));
    if (!t || !b) {
        free(t);
        free(b);
        return parlm_error(PARLM_ENOMEM, "recursive doubling: cannot allocate %lld floats",
                           (long long)cap);
    }
    free(c->tmp);
    free(c->bf);
    c->tmp = t;
    c->bf = b;
    c->cap = cap;
    return PARLM_OK;
}

void dist_rd_scratch_free(dist_rd_scratch *s)
{
    free(s->tmp);
    free(s->bf);
    s->tmp = NULL;
    s->bf = NULL;
    s->cap = 0;
}

parlm_status dist_rd_init(dist_rd *g, dist_rd_scratch *s, MPI_Comm comm, float *buf, int64_t n,
                          float scale, int bf16, int tag)
{
    if (n > INT_MAX)
        return parlm_error(PARLM_EUNSUPPORTED,
                           "recursive doubling sends the buffer in one message: n = %lld > INT_MAX",
                           (long long)n);
    parlm_status st = rd_scratch(s, n);
    if (st != PARLM_OK)
        return st;
    g->comm = comm;
    MPI_Comm_rank(comm, &g->rank);
    MPI_Comm_size(comm, &g->size);
    g->tag = tag;
    g->buf = buf;
    g->n = n;
    g->scale = scale;
    g->bf16 = bf16;
    g->tmp = s->tmp;
    g->sbf = s->bf;
    g->rbf = s->bf + s->cap;
    g->pof2 = 1;
    while (g->pof2 * 2 <= g->size)
        g->pof2 *= 2;
    g->rem = g->size - g->pof2;
    g->newrank = g->rank < 2 * g->rem ? (g->rank % 2 ? g->rank / 2 : -1) : g->rank - g->rem;
    g->phase = RD_FOLD_IN;
    g->mask = 1;
    g->posted = 0;
    g->req[0] = g->req[1] = MPI_REQUEST_NULL;
    return PARLM_OK;
}

/* Posts a send of buf (or its bf16 copy) to `to` and/or a receive from `from` (-1: none). */
static int post(dist_rd *g, int to, int from)
{
    int err = MPI_SUCCESS, n = (int)g->n;
    if (from >= 0)
        err = g->bf16 ? MPI_Irecv(g->rbf, n, MPI_UINT16_T, from, g->tag, g->comm, &g->req[0])
                      : MPI_Irecv(g->tmp, n, MPI_FLOAT, from, g->tag, g->comm, &g->req[0]);
    if (err == MPI_SUCCESS && to >= 0) {
        if (g->bf16)
            dist_to_bf16(g->sbf, g->buf, g->n);
        err = g->bf16 ? MPI_Isend(g->sbf, n, MPI_UINT16_T, to, g->tag, g->comm, &g->req[1])
                      : MPI_Isend(g->buf, n, MPI_FLOAT, to, g->tag, g->comm, &g->req[1]);
    }
    if (err != MPI_SUCCESS)
        return dist_mpi_error(err, "MPI_Isend/Irecv(recursive doubling)");
    g->posted = 1;
    return DIST_DONE;
}

/* DIST_DONE once both posted operations completed; then the received data is added
 * (add = 1) or copied (add = 2) into buf. */
static int complete(dist_rd *g, int add)
{
    int flag = 0;
    int err = MPI_Testall(2, g->req, &flag, MPI_STATUSES_IGNORE);
    if (err != MPI_SUCCESS)
        return dist_mpi_error(err, "MPI_Testall(recursive doubling)");
    if (!flag)
        return DIST_PENDING;
    if (add == 1 && g->bf16)
        dist_add_bf16(g->buf, g->rbf, g->n);
    else if (add == 1)
        dist_add(g->buf, g->tmp, g->n);
    else if (add == 2 && g->bf16)
        dist_from_bf16(g->buf, g->rbf, g->n);
    else if (add == 2)
        memcpy(g->buf, g->tmp, (size_t)g->n * sizeof(float));
    g->posted = 0;
    return DIST_DONE;
}

static int partner_rank(const dist_rd *g, int newpartner)
{
    return newpartner < g->rem ? newpartner * 2 + 1 : newpartner + g->rem;
}

int dist_rd_progress(dist_rd *g)
{
    int rc;
    for (;;) {
        switch (g->phase) {
        case RD_FOLD_IN:
            if (g->rank < 2 * g->rem) {
                int even = g->rank % 2 == 0;
                if (!g->posted && (rc = post(g, even ? g->rank + 1 : -1, even ? -1 : g->rank - 1)) < 0)
                    return rc;
                if ((rc = complete(g, even ? 0 : 1)) != DIST_DONE)
                    return rc;
            }
            g->phase = g->newrank < 0 ? RD_FOLD_OUT : RD_ROUNDS;
            break;
        case RD_ROUNDS:
            if (g->mask < g->pof2) {
                if (!g->posted) {
                    int partner = partner_rank(g, g->newrank ^ g->mask);
                    if (g->bf16) /* both partners add the same rounded operands */
                        dist_round_bf16(g->buf, g->n);
                    if ((rc = post(g, partner, partner)) < 0)
                        return rc;
                }
                if ((rc = complete(g, 1)) != DIST_DONE)
                    return rc;
                g->mask *= 2;
                break;
            }
            if (g->scale != 1.0f)
                dist_scale(g->buf, g->scale, g->n);
            if (g->bf16 && g->rem > 0) /* the ranks sitting out get bf16 copies */
                dist_round_bf16(g->buf, g->n);
            g->phase = RD_FOLD_OUT;
            break;
        case RD_FOLD_OUT:
            if (g->rank < 2 * g->rem) {
                int even = g->rank % 2 == 0;
                if (!g->posted && (rc = post(g, even ? -1 : g->rank - 1, even ? g->rank + 1 : -1)) < 0)
                    return rc;
                if ((rc = complete(g, even ? 2 : 0)) != DIST_DONE)
                    return rc;
            }
            g->phase = RD_DONE;
            break;
        default:
            return DIST_DONE;
        }
    }
}
