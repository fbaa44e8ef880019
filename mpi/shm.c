/* mpi/shm.c — collectives among the ranks of one node through an MPI-3 shared-memory
 * window (MPI_Win_allocate_shared). Each local rank owns two counters and shm_nbuf
 * buffers of shm_chunk floats, used in rotation. A user buffer goes through in chunks.
 * Synchronization is on C11 atomics in the window (release on store, acquire on load);
 * the direct loads and stores live in one MPI_Win_lock_all epoch.
 *
 * Nodes of up to DIST_SHM_FULL_SUM_MAX ranks (one rank per socket on 2-socket servers,
 * the common case) run a pipeline: a rank deposits chunk s into buffer s % nbuf and
 * publishes flag = s + 1; once every flag has passed s, it finishes the chunk (sums all
 * buffers, or copies what it needs) and publishes done = s + 1. It may deposit ahead as
 * long as every rank is done with the chunk that last used the buffer (done >= s + 1 -
 * nbuf). So a rank that calls progress between two layers of backward can hand over up
 * to nbuf chunks while its peers compute, and finish them at its next call.
 *
 * Larger nodes go chunk by chunk: everyone copies its chunk into its current buffer and
 * arrives (flag = generation); each rank sums one slice, arrives again, and everyone
 * copies the other slices back. The buffers stay in cache, so memory traffic is about
 * one read and one write of the user's buffer. Why rotation is safe there: a rank
 * rewrites buffer b of chunk t at chunk t+nbuf, after it passed a sync of chunk t+1 or
 * later, and every rank arrives there only after its last read of chunk t. The rotation
 * runs on across collectives, so this holds between consecutive requests too. */
#include <stdlib.h>
#include <string.h>

#include "../lib/error.h"
#include "comm.h"

/* A rank's segment: 64 bytes of slack (MPI aligns segments to only 8 bytes here; the
 * offset within the page is the same in every process, so rounding the address up to 64
 * finds the same place everywhere), the two counters each alone in its cache lines, then
 * the buffers. */
#define SHM_ALIGN 64
#define SHM_FLAG_BYTES 256
#define SHM_DONE_OFFSET 128

parlm_status dist_shm_setup(parlm_comm *c)
{
    /* every call below is collective over c->local: no early return between them */
    size_t slot_bytes = (size_t)c->shm_chunk * (size_t)c->shm_nbuf * sizeof(float);
    size_t seg = SHM_ALIGN + SHM_FLAG_BYTES + slot_bytes;
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "alloc_shared_noncontig", "true"); /* each segment near its owner */
    void *base = NULL;
    int err = MPI_Win_allocate_shared((MPI_Aint)seg, 1, info, c->local, &base, &c->win);
    MPI_Info_free(&info);
    if (err != MPI_SUCCESS) {
        c->win = MPI_WIN_NULL;
        return dist_mpi_error(err, "MPI_Win_allocate_shared");
    }
    MPI_Win_set_errhandler(c->win, MPI_ERRORS_RETURN);
    int ok = 1;
    for (int j = 0; j < c->local_size; j++) {
        MPI_Aint size = 0;
        int disp = 1;
        char *p = NULL;
        err = MPI_Win_shared_query(c->win, j, &size, &disp, &p);
        if (err != MPI_SUCCESS || !p || (size_t)size < seg) {
            ok = 0;
            continue;
        }
        p += (SHM_ALIGN - (uintptr_t)p % SHM_ALIGN) % SHM_ALIGN;
        c->flag[j] = (_Atomic uint64_t *)(void *)p;
        c->done[j] = (_Atomic uint64_t *)(void *)(p + SHM_DONE_OFFSET);
        c->slot[j] = (float *)(void *)(p + SHM_FLAG_BYTES);
    }
    if (ok && !atomic_is_lock_free(c->flag[c->local_rank]))
        ok = 0; /* atomics through locks cannot synchronize processes */
    if (ok) {
        atomic_store(c->flag[c->local_rank], 0);
        atomic_store(c->done[c->local_rank], 0);
        memset(c->slot[c->local_rank], 0, slot_bytes); /* first touch by the owner */
    }
    err = MPI_Win_lock_all(MPI_MODE_NOCHECK, c->win);
    int err2 = MPI_Barrier(c->local); /* counters are zero before anyone reads them */
    if (err != MPI_SUCCESS)
        return dist_mpi_error(err, "MPI_Win_lock_all");
    if (err2 != MPI_SUCCESS)
        return dist_mpi_error(err2, "MPI_Barrier(node)");
    c->have_win = ok; /* 0: collectives fall back to the ring (agreed on in creation) */
    return PARLM_OK;
}

void dist_shm_teardown(parlm_comm *c)
{
    if (c->win == MPI_WIN_NULL)
        return;
    MPI_Win_unlock_all(c->win);
    MPI_Win_free(&c->win);
    c->have_win = 0;
}

static void arrive(parlm_comm *c)
{
    c->shm_gen++;
    atomic_store_explicit(c->flag[c->local_rank], c->shm_gen, memory_order_release);
}

static int all_arrived(const parlm_comm *c, uint64_t gen)
{
    for (int j = 0; j < c->local_size; j++)
        if (atomic_load_explicit(c->flag[j], memory_order_acquire) < gen)
            return 0;
    return 1;
}

/* local rank j's buffer for the current chunk */
static float *cur(const parlm_comm *c, int j)
{
    return c->slot[j] + (c->shm_next % c->shm_nbuf) * c->shm_chunk;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Length of chunk k (cb elements each) of a block of len elements; 0 past its end. */
static int64_t chunk_len(int64_t len, int64_t k, int64_t cb)
{
    return len > k * cb ? min64(cb, len - k * cb) : 0;
}

void dist_shm_init(dist_shm *s, parlm_comm *c, int mode, float *buf, int64_t n, float scale)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->buf = buf;
    s->n = n;
    s->scale = scale;
    int64_t len = n; /* what is cut into chunks: the buffer, or the longest block */
    s->cb = c->shm_chunk;
    if (mode == DIST_SHM_RS || mode == DIST_SHM_AG)
        len = (n + c->local_size - 1) / c->local_size;
    if (mode == DIST_SHM_RS) /* a buffer holds chunk k of every block */
        s->cb = c->shm_chunk / c->local_size > 0 ? c->shm_chunk / c->local_size : 1;
    s->nk = (len + s->cb - 1) / s->cb;
    if (c->local_size <= DIST_SHM_FULL_SUM_MAX) { /* the pipeline numbers chunks itself */
        s->base = (uint64_t)c->shm_next;
        c->shm_next += s->nk;
    }
}

/* ---- small nodes: the run-ahead pipeline ---- */

static float *slot_of(const parlm_comm *c, int j, uint64_t seq)
{
    return c->slot[j] + (int64_t)(seq % (uint64_t)c->shm_nbuf) * c->shm_chunk;
}

static int all_reached(_Atomic uint64_t *const *ctr, int L, uint64_t v)
{
    for (int j = 0; j < L; j++)
        if (atomic_load_explicit(ctr[j], memory_order_acquire) < v)
            return 0;
    return 1;
}

/* chunk k of this rank's contribution into its buffer dst */
static void deposit(const dist_shm *s, const parlm_comm *c, int64_t k, float *dst)
{
    int me = c->local_rank, L = c->local_size;
    int64_t off = k * s->cb, m = min64(s->cb, s->n - off), boff, blen;
    switch (s->mode) {
    case DIST_SHM_ALLREDUCE:
    case DIST_SHM_REDUCE: memcpy(dst, s->buf + off, (size_t)m * sizeof(float)); break;
    case DIST_SHM_BCAST:
        if (me == 0)
            memcpy(dst, s->buf + off, (size_t)m * sizeof(float));
        break;
    case DIST_SHM_RS: /* area j holds chunk k of block j */
        for (int j = 0; j < L; j++) {
            parlm_block_range(s->n, L, j, &boff, &blen);
            memcpy(dst + j * s->cb, s->buf + boff + k * s->cb,
                   (size_t)chunk_len(blen, k, s->cb) * sizeof(float));
        }
        break;
    default: /* all-gather: chunk k of this rank's block */
        parlm_block_range(s->n, L, me, &boff, &blen);
        memcpy(dst, s->buf + boff + k * s->cb, (size_t)chunk_len(blen, k, s->cb) * sizeof(float));
        break;
    }
}

/* chunk k (sequence number seq) from every rank's buffer into this rank's result */
static void finish(const dist_shm *s, parlm_comm *c, int64_t k, uint64_t seq)
{
    int me = c->local_rank, L = c->local_size;
    int64_t off = k * s->cb, m = min64(s->cb, s->n - off), boff, blen;
    switch (s->mode) {
    case DIST_SHM_ALLREDUCE:
    case DIST_SHM_REDUCE:
        if (s->mode == DIST_SHM_ALLREDUCE || me == 0) {
            for (int j = 0; j < L; j++)
                c->shm_src[j] = slot_of(c, j, seq);
            dist_sum_k(s->buf + off, c->shm_src, L, m, s->scale);
        }
        break;
    case DIST_SHM_BCAST:
        if (me != 0)
            memcpy(s->buf + off, slot_of(c, 0, seq), (size_t)m * sizeof(float));
        break;
    case DIST_SHM_RS:
        parlm_block_range(s->n, L, me, &boff, &blen);
        for (int j = 0; j < L; j++)
            c->shm_src[j] = slot_of(c, j, seq) + me * s->cb;
        dist_sum_k(s->buf + boff + k * s->cb, c->shm_src, L, chunk_len(blen, k, s->cb), s->scale);
        break;
    default:
        for (int j = 0; j < L; j++) {
            parlm_block_range(s->n, L, j, &boff, &blen);
            if (j != me)
                memcpy(s->buf + boff + k * s->cb, slot_of(c, j, seq),
                       (size_t)chunk_len(blen, k, s->cb) * sizeof(float));
        }
        break;
    }
}

/* Finishing comes first (it frees buffers and keeps data in cache); otherwise deposit the
 * next chunk if its buffer is free. Returns when neither is possible. */
static int progress_small(dist_shm *s, parlm_comm *c)
{
    int me = c->local_rank, L = c->local_size;
    uint64_t nbuf = (uint64_t)c->shm_nbuf;
    while (s->k < s->nk) {
        uint64_t seq = s->base + (uint64_t)s->k;
        if (s->k < s->kd && all_reached(c->flag, L, seq + 1)) {
            finish(s, c, s->k, seq);
            atomic_store_explicit(c->done[me], seq + 1, memory_order_release);
            s->k++;
            continue;
        }
        seq = s->base + (uint64_t)s->kd;
        if (s->kd < s->nk && (seq < nbuf || all_reached(c->done, L, seq + 1 - nbuf))) {
            deposit(s, c, s->kd, slot_of(c, me, seq));
            atomic_store_explicit(c->flag[me], seq + 1, memory_order_release);
            s->kd++;
            continue;
        }
        return DIST_PENDING;
    }
    return DIST_DONE;
}

/* ---- large nodes: chunk by chunk ---- */

/* all-reduce / reduce-to-leader by slices, chunk s->k; s->sub: 0 copy in, 1 reduce,
 * 2 copy out */
static int step_reduce(dist_shm *s, parlm_comm *c)
{
    int me = c->local_rank, L = c->local_size;
    int64_t off = s->k * s->cb, m = min64(s->cb, s->n - off);
    float *x = s->buf + off;
    if (s->sub == 0) {
        memcpy(cur(c, me), x, (size_t)m * sizeof(float));
        arrive(c);
        s->gen = c->shm_gen;
        s->sub = 1;
    }
    int64_t lo, len;
    parlm_block_range(m, L, me, &lo, &len);
    if (s->sub == 1) {
        if (!all_arrived(c, s->gen))
            return DIST_PENDING;
        for (int j = 0; j < L; j++)
            c->shm_src[j] = cur(c, j) + lo;
        dist_sum_k(x + lo, c->shm_src, L, len, s->scale);
        memcpy(cur(c, me) + lo, x + lo, (size_t)len * sizeof(float));
        arrive(c);
        s->gen = c->shm_gen;
        s->sub = 2;
    }
    /* only the leader needs the slices of a reduce-to-leader; the others move on (their
     * next rewrite of these buffers waits for a later sync the leader reaches after) */
    if (s->mode == DIST_SHM_ALLREDUCE || me == 0) {
        if (!all_arrived(c, s->gen))
            return DIST_PENDING;
        for (int j = 0; j < L; j++) {
            int64_t jlo, jlen;
            parlm_block_range(m, L, j, &jlo, &jlen);
            if (j != me)
                memcpy(x + jlo, cur(c, j) + jlo, (size_t)jlen * sizeof(float));
        }
    }
    return DIST_DONE;
}

/* leader's buf -> everyone, chunk s->k */
static int step_bcast(dist_shm *s, parlm_comm *c)
{
    int64_t off = s->k * s->cb, m = min64(s->cb, s->n - off);
    if (s->sub == 0) {
        if (c->local_rank == 0)
            memcpy(cur(c, 0), s->buf + off, (size_t)m * sizeof(float));
        arrive(c);
        s->gen = c->shm_gen;
        s->sub = 1;
    }
    if (!all_arrived(c, s->gen))
        return DIST_PENDING;
    if (c->local_rank != 0)
        memcpy(s->buf + off, cur(c, 0), (size_t)m * sizeof(float));
    return DIST_DONE;
}

/* reduce-scatter: area j of a buffer holds chunk k of block j; each rank sums its own
 * area over all buffers */
static int step_rs(dist_shm *s, parlm_comm *c)
{
    int me = c->local_rank, L = c->local_size;
    if (s->sub == 0) {
        for (int j = 0; j < L; j++) {
            int64_t boff, blen;
            parlm_block_range(s->n, L, j, &boff, &blen);
            memcpy(cur(c, me) + j * s->cb, s->buf + boff + s->k * s->cb,
                   (size_t)chunk_len(blen, s->k, s->cb) * sizeof(float));
        }
        arrive(c);
        s->gen = c->shm_gen;
        s->sub = 1;
    }
    if (!all_arrived(c, s->gen))
        return DIST_PENDING;
    int64_t boff, blen;
    parlm_block_range(s->n, L, me, &boff, &blen);
    for (int j = 0; j < L; j++)
        c->shm_src[j] = cur(c, j) + me * s->cb;
    dist_sum_k(s->buf + boff + s->k * s->cb, c->shm_src, L, chunk_len(blen, s->k, s->cb), s->scale);
    return DIST_DONE;
}

/* all-gather: each buffer holds chunk k of its owner's block */
static int step_ag(dist_shm *s, parlm_comm *c)
{
    int me = c->local_rank, L = c->local_size;
    if (s->sub == 0) {
        int64_t boff, blen;
        parlm_block_range(s->n, L, me, &boff, &blen);
        memcpy(cur(c, me), s->buf + boff + s->k * s->cb,
               (size_t)chunk_len(blen, s->k, s->cb) * sizeof(float));
        arrive(c);
        s->gen = c->shm_gen;
        s->sub = 1;
    }
    if (!all_arrived(c, s->gen))
        return DIST_PENDING;
    for (int j = 0; j < L; j++) {
        int64_t boff, blen;
        parlm_block_range(s->n, L, j, &boff, &blen);
        if (j != me)
            memcpy(s->buf + boff + s->k * s->cb, cur(c, j),
                   (size_t)chunk_len(blen, s->k, s->cb) * sizeof(float));
    }
    return DIST_DONE;
}

int dist_shm_progress(dist_shm *s, parlm_comm *c)
{
    if (c->local_size <= DIST_SHM_FULL_SUM_MAX)
        return progress_small(s, c);
    while (s->k < s->nk) {
        int rc;
        switch (s->mode) {
        case DIST_SHM_ALLREDUCE:
        case DIST_SHM_REDUCE: rc = step_reduce(s, c); break;
        case DIST_SHM_BCAST: rc = step_bcast(s, c); break;
        case DIST_SHM_RS: rc = step_rs(s, c); break;
        default: rc = step_ag(s, c); break;
        }
        if (rc != DIST_DONE)
            return rc;
        c->shm_next++;
        s->k++;
        s->sub = 0;
    }
    return DIST_DONE;
}
