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
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "algo.h"

/* A rank's segment: 64 bytes of slack (MPI aligns segments to only 8 bytes here; the
 * offset within the page is the same in every process, so rounding the address up to 64
 * finds the same place everywhere), the two counters each alone in its cache lines, then
 * the buffers. */
#define SHM_ALIGN 64
#define SHM_FLAG_BYTES 256
#define SHM_RED_OFFSET 64
#define SHM_DONE_OFFSET 128
#define SHM_DESC_OFFSET 192 /* two slots of two words */

int dist_crowded(const dist_node *c)
{
    return c->oversubscribed ||
           (c->cpus > 0 && (int64_t)c->node_ranks * omp_get_max_threads() > c->cpus);
}

parlm_status dist_node_alloc(dist_node *c)
{
    c->slot = calloc((size_t)c->local_size, sizeof *c->slot);
    c->flag = calloc((size_t)c->local_size, sizeof *c->flag);
    c->done = calloc((size_t)c->local_size, sizeof *c->done);
    c->red = calloc((size_t)c->local_size, sizeof *c->red);
    c->desc = calloc((size_t)c->local_size, sizeof *c->desc);
    c->shm_src = calloc((size_t)c->local_size, sizeof *c->shm_src);
    if (!c->slot || !c->flag || !c->done || !c->red || !c->desc || !c->shm_src)
        return parlm_error(PARLM_ENOMEM, "parlm_comm: cannot allocate the node's tables");
    return PARLM_OK;
}

static int shared_find(const dist_node *c, const float *buf, int64_t n, const float **peer,
                       int64_t *offset);

parlm_status dist_shm_room(const dist_node *c, size_t bytes)
{
    const char *dir = getenv("OMPI_MCA_osc_sm_backing_directory");
    struct statvfs fs;
    if (statvfs(dir && *dir ? dir : "/dev/shm", &fs) != 0)
        return PARLM_OK;
    double need = 1.1 * (double)c->local_size * (double)bytes;
    double have = (double)fs.f_bavail * (double)fs.f_frsize;
    if (have >= need)
        return PARLM_OK;
    return parlm_error(PARLM_ENOMEM, "shared memory: %.0f MB free in %s, %.0f MB needed",
                       have / 1e6, dir && *dir ? dir : "/dev/shm", need / 1e6);
}

/* A window of `bytes` per local rank, each part near its owner; MPI errors returned. */
static int allocate_window(MPI_Comm local, size_t bytes, MPI_Win *win)
{
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "alloc_shared_noncontig", "true"); /* each segment near its owner */
    void *base = NULL;
    int err = MPI_Win_allocate_shared((MPI_Aint)bytes, 1, info, local, &base, win);
    MPI_Info_free(&info);
    if (err != MPI_SUCCESS)
        *win = MPI_WIN_NULL;
    else
        MPI_Win_set_errhandler(*win, MPI_ERRORS_RETURN);
    return err;
}

/* local rank j's part of win as mapped here, rounded up to SHM_ALIGN (the same place in
 * every process); NULL if MPI cannot say or the part is smaller than bytes */
static char *window_part(MPI_Win win, int j, size_t bytes)
{
    MPI_Aint size = 0;
    int disp = 1;
    char *p = NULL;
    int err = MPI_Win_shared_query(win, j, &size, &disp, &p);
    if (err != MPI_SUCCESS || !p || (size_t)size < bytes)
        return NULL;
    return p + (SHM_ALIGN - (uintptr_t)p % SHM_ALIGN) % SHM_ALIGN;
}

parlm_status dist_shm_setup(dist_node *c)
{
    /* every call below is collective over c->local: no early return between them */
    size_t slot_bytes = (size_t)c->shm_chunk * (size_t)c->shm_nbuf * sizeof(float);
    size_t seg = SHM_ALIGN + SHM_FLAG_BYTES + slot_bytes;
    if (dist_shm_room(c, seg) != PARLM_OK) { /* the same file system for the whole node */
        c->win = MPI_WIN_NULL;
        c->have_win = 0; /* collectives take the ring (agreed on in creation) */
        return PARLM_OK;
    }
    int err = allocate_window(c->local, seg, &c->win);
    if (err != MPI_SUCCESS)
        return dist_mpi_error(err, "MPI_Win_allocate_shared");
    int ok = 1;
    for (int j = 0; j < c->local_size; j++) {
        char *p = window_part(c->win, j, seg);
        if (!p) {
            ok = 0;
            continue;
        }
        c->flag[j] = (_Atomic uint64_t *)(void *)p;
        c->done[j] = (_Atomic uint64_t *)(void *)(p + SHM_DONE_OFFSET);
        c->red[j] = (_Atomic uint64_t *)(void *)(p + SHM_RED_OFFSET);
        c->desc[j] = (_Atomic uint64_t *)(void *)(p + SHM_DESC_OFFSET);
        c->slot[j] = (float *)(void *)(p + SHM_FLAG_BYTES);
    }
    if (ok && !atomic_is_lock_free(c->flag[c->local_rank]))
        ok = 0; /* atomics through locks cannot synchronize processes */
    if (ok) {
        atomic_store(c->flag[c->local_rank], 0);
        atomic_store(c->done[c->local_rank], 0);
        atomic_store(c->red[c->local_rank], 0);
        for (int i = 0; i < 4; i++)
            atomic_store(c->desc[c->local_rank] + i, 0);
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


static void arrive(dist_node *c)
{
    c->shm_gen++;
    atomic_store_explicit(c->flag[c->local_rank], c->shm_gen, memory_order_release);
}

static int all_arrived(const dist_node *c, uint64_t gen)
{
    for (int j = 0; j < c->local_size; j++)
        if (atomic_load_explicit(c->flag[j], memory_order_acquire) < gen)
            return 0;
    return 1;
}

/* local rank j's buffer for the current chunk */
static float *cur(const dist_node *c, int j)
{
    return c->slot[j] + (c->shm_next % c->shm_nbuf) * c->shm_chunk;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Length of chunk k (cb elements each) of a block of len elements; 0 past its end. */
static int64_t chunk_len(int64_t len, int64_t k, int64_t cb)
{
    return len > k * cb ? min64(cb, len - k * cb) : 0;
}

void dist_shm_init(dist_shm *s, dist_node *c, int mode, float *buf, int64_t n, float scale)
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
        int64_t off = 0;
        s->zc = (mode == DIST_SHM_ALLREDUCE || mode == DIST_SHM_RS || mode == DIST_SHM_AG) &&
                c->nodes == 1 && shared_find(c, buf, n, s->peer, &off);
        /* Two slots: a peer compares this op's descriptor before it finishes the op's
         * first chunk, so the slot is not rewritten before then (that would take this
         * rank two ops further, and the next op cannot complete without the peer). */
        s->dslot = (int)(c->shm_ops++ % 2);
        s->desc[0] = (uint64_t)n << 8 | (uint64_t)mode << 1 | (uint64_t)s->zc;
        s->desc[1] = (uint64_t)off;
        _Atomic uint64_t *d = c->desc[c->local_rank] + 2 * s->dslot;
        atomic_store_explicit(d, s->desc[0], memory_order_relaxed);
        atomic_store_explicit(d + 1, s->desc[1], memory_order_relaxed);
        /* published by the release of this op's first flag store */
    }
}

/* Before reading anything a peer published for this op: did every rank start the same
 * collective? (Mismatched lengths, or a shared buffer on one rank and a private one or
 * another offset on another, would otherwise read garbage.) */
static int check_peers(dist_shm *s, const dist_node *c)
{
    if (s->checked)
        return DIST_DONE;
    for (int j = 0; j < c->local_size; j++) {
        const _Atomic uint64_t *d = c->desc[j] + 2 * s->dslot;
        uint64_t d0 = atomic_load_explicit(d, memory_order_relaxed);
        uint64_t d1 = atomic_load_explicit(d + 1, memory_order_relaxed);
        if (d0 != s->desc[0] || d1 != s->desc[1])
            return parlm_error(PARLM_EINVAL,
                               "shared-memory collective: local rank %d started n = %llu (%s, "
                               "offset %llu), local rank %d n = %llu (%s, offset %llu): every "
                               "rank must pass the same length, and a buffer from "
                               "parlm_comm_alloc_shared at the same offset or none",
                               c->local_rank, (unsigned long long)(s->desc[0] >> 8),
                               s->desc[0] & 1 ? "shared" : "private",
                               (unsigned long long)s->desc[1], j,
                               (unsigned long long)(d0 >> 8), d0 & 1 ? "shared" : "private",
                               (unsigned long long)d1);
    }
    s->checked = 1;
    return DIST_DONE;
}

/* ---- small nodes: the run-ahead pipeline ---- */

static float *slot_of(const dist_node *c, int j, uint64_t seq)
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
static void deposit(const dist_shm *s, const dist_node *c, int64_t k, float *dst)
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
static void finish(const dist_shm *s, dist_node *c, int64_t k, uint64_t seq)
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
static int progress_small(dist_shm *s, dist_node *c)
{
    int me = c->local_rank, L = c->local_size;
    uint64_t nbuf = (uint64_t)c->shm_nbuf;
    while (s->k < s->nk) {
        uint64_t seq = s->base + (uint64_t)s->k;
        if (s->k < s->kd && all_reached(c->flag, L, seq + 1)) {
            int rc = check_peers(s, c);
            if (rc != DIST_DONE)
                return rc;
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

/* dst = src[me]: dst[i] = (src[0][i] + src[1][i]) * scale, k <= 2. Adding the other
 * source into dst gives the same bits as dist_sum_k's rank-ordered sum (a + b == b + a in
 * IEEE arithmetic), and dst never aliases the source it reads. */
static void sum_in_place(float *dst, const float *const *src, int k, int me, int64_t n,
                         float scale)
{
    if (k == 2)
        dist_add(dst, src[1 - me], n);
    if (scale != 1.0f)
        dist_scale(dst, scale, n);
}

/* Zero-copy collectives on a buffer in parlm_comm_alloc_shared memory: every rank reads
 * its peers' buffers directly, so nothing is copied into the window. The whole buffer is
 * final at the start, so one flag store covers all chunks. All-reduce takes two steps per
 * chunk: each rank reduces its slice from all ranks' buffers into its own and publishes
 * red; then it copies the other slices from their owners' buffers and publishes done. A
 * rank overwrites a peer's slice in its own buffer only after that peer's red (the peer
 * has read it), and the op completes only when every peer's done passed its end (no one
 * still reads this rank's buffer). Reduce-scatter and all-gather take one step: a rank
 * writes only its own block (RS) or only the others' (AG) in its buffer, and peers read
 * only their own block (RS) or this rank's (AG) from it. Each step takes every chunk that
 * is ready at once and splits them over the rank's OpenMP threads (idle then: progress
 * runs between compute ops), so a rank with a socket of cores moves memory at the
 * socket's bandwidth, not one core's. */
enum { ZC_REDUCE, ZC_GATHER };

/* one chunk of one step; reads s and the peers' buffers, writes this rank's only */
static void zc_chunk(const dist_shm *s, const dist_node *c, int64_t k, int stage)
{
    int me = c->local_rank, L = c->local_size;
    const float *src[DIST_SHM_FULL_SUM_MAX];
    int64_t off, len;
    if (s->mode == DIST_SHM_ALLREDUCE) { /* slice j of chunk k belongs to rank j */
        int64_t base = k * s->cb, m = min64(s->cb, s->n - base);
        for (int j = 0; j < L; j++) {
            if (stage == ZC_REDUCE ? j != me : j == me)
                continue;
            parlm_block_range(m, L, j, &off, &len);
            off += base;
            if (stage == ZC_REDUCE) {
                for (int i = 0; i < L; i++)
                    src[i] = s->peer[i] + off;
                sum_in_place(s->buf + off, src, L, me, len, s->scale);
            } else {
                memcpy(s->buf + off, s->peer[j] + off, (size_t)len * sizeof(float));
            }
        }
        return;
    }
    for (int j = 0; j < L; j++) { /* RS: this rank's block; AG: the others' */
        if (s->mode == DIST_SHM_RS ? j != me : j == me)
            continue;
        int64_t boff, blen;
        parlm_block_range(s->n, L, j, &boff, &blen);
        off = boff + k * s->cb;
        len = chunk_len(blen, k, s->cb);
        if (s->mode == DIST_SHM_RS) {
            for (int i = 0; i < L; i++)
                src[i] = s->peer[i] + off;
            sum_in_place(s->buf + off, src, L, me, len, s->scale);
        } else {
            memcpy(s->buf + off, s->peer[j] + off, (size_t)len * sizeof(float));
        }
    }
}

/* Chunks *k .. end-1 of a step, then *ctr = base + end. One thread goes chunk by chunk,
 * publishing each (peers start on it at once; no parallel region's cost on small
 * messages); several share the chunks, publishing when all are done. */
static void zc_step(const dist_shm *s, const dist_node *c, int64_t *k, int64_t end, int stage,
                    _Atomic uint64_t *ctr)
{
    /* a crowded node: one thread, no parallel region whose idle threads would spin in
     * the OpenMP runtime on the cores the peers need */
    int64_t nt = omp_in_parallel() || dist_crowded(c) ? 1 : omp_get_max_threads();
    if (nt > end - *k)
        nt = end - *k;
    if (nt <= 1) {
        for (; *k < end; (*k)++) {
            zc_chunk(s, c, *k, stage);
            atomic_store_explicit(ctr, s->base + (uint64_t)*k + 1, memory_order_release);
        }
        return;
    }
    int64_t k0 = *k;
#pragma omp parallel for num_threads((int)nt) schedule(static)
    for (int64_t i = k0; i < end; i++)
        zc_chunk(s, c, i, stage);
    *k = end;
    atomic_store_explicit(ctr, s->base + (uint64_t)end, memory_order_release);
}

/* the chunk index (in from .. to) every rank's counter has passed */
static int64_t reached(_Atomic uint64_t *const *ctr, int L, uint64_t base, int64_t from, int64_t to)
{
    uint64_t low = UINT64_MAX;
    for (int j = 0; j < L; j++) {
        uint64_t v = atomic_load_explicit(ctr[j], memory_order_acquire);
        low = v < low ? v : low;
    }
    int64_t r = low <= base ? 0 : low - base < (uint64_t)to ? (int64_t)(low - base) : to;
    return r > from ? r : from;
}

static int progress_zc(dist_shm *s, dist_node *c)
{
    int me = c->local_rank, L = c->local_size, ar = s->mode == DIST_SHM_ALLREDUCE;
    if (s->kd == 0) {
        s->kd = s->nk;
        atomic_store_explicit(c->flag[me], s->base + (uint64_t)s->nk, memory_order_release);
    }
    /* first step: reduce (all-reduce, reduce-scatter) or gather (all-gather) */
    int64_t *k1 = ar ? &s->kb : &s->k, end = reached(c->flag, L, s->base, *k1, s->nk);
    if (end > *k1) {
        int rc = check_peers(s, c);
        if (rc != DIST_DONE)
            return rc;
        zc_step(s, c, k1, end, s->mode == DIST_SHM_AG ? ZC_GATHER : ZC_REDUCE,
                ar ? c->red[me] : c->done[me]);
    }
    /* all-reduce, second step: the other slices, once their owners have reduced them */
    if (ar && (end = reached(c->red, L, s->base, s->k, s->kb)) > s->k)
        zc_step(s, c, &s->k, end, ZC_GATHER, c->done[me]);
    if (s->k == s->nk && all_reached(c->done, L, s->base + (uint64_t)s->nk))
        return DIST_DONE;
    return DIST_PENDING;
}

/* ---- large nodes: chunk by chunk ---- */

/* all-reduce / reduce-to-leader by slices, chunk s->k; s->sub: 0 copy in, 1 reduce,
 * 2 copy out */
static int step_reduce(dist_shm *s, dist_node *c)
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
static int step_bcast(dist_shm *s, dist_node *c)
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
static int step_rs(dist_shm *s, dist_node *c)
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
static int step_ag(dist_shm *s, dist_node *c)
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

int dist_shm_progress(dist_shm *s, dist_node *c)
{
    if (c->local_size <= DIST_SHM_FULL_SUM_MAX)
        return s->zc ? progress_zc(s, c) : progress_small(s, c);
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

/* ---- buffers for zero-copy collectives ---- */

static int shared_find(const dist_node *c, const float *buf, int64_t n, const float **peer,
                     int64_t *offset)
{
    for (int i = 0; i < c->n_shared; i++) {
        const dist_shared_buf *b = &c->shared[i];
        if (b->win == MPI_WIN_NULL || buf < b->mine || buf + n > b->mine + b->n)
            continue;
        *offset = buf - b->mine;
        for (int j = 0; j < c->local_size; j++)
            peer[j] = b->part[j] + *offset;
        return 1;
    }
    return 0;
}

void dist_shared_unmap(dist_shared_buf *b, int mpi_alive)
{
    if (b->win != MPI_WIN_NULL) {
        if (mpi_alive) {
            MPI_Win_unlock_all(b->win);
            MPI_Win_free(&b->win);
        }
    } else {
        free(b->mine); /* aligned_alloc */
    }
    free(b->part);
    memset(b, 0, sizeof *b);
    b->win = MPI_WIN_NULL;
}

void dist_node_free(dist_node *c, int mpi_alive)
{
    for (int i = 0; i < c->n_shared; i++)
        dist_shared_unmap(&c->shared[i], mpi_alive);
    free(c->shared);
    c->shared = NULL;
    c->n_shared = c->cap_shared = 0;
    if (mpi_alive && c->win != MPI_WIN_NULL) {
        MPI_Win_unlock_all(c->win);
        MPI_Win_free(&c->win);
    }
    c->have_win = 0;
    free(c->slot);
    free(c->flag);
    free(c->done);
    free(c->red);
    free(c->desc);
    free(c->shm_src);
    c->slot = NULL;
    c->flag = c->done = c->red = c->desc = NULL;
    c->shm_src = NULL;
}

/* this rank's part of a new window of n floats on the node, and every part's address */
parlm_status dist_shared_map(dist_node *c, dist_shared_buf *b, int64_t n)
{
    size_t bytes = (size_t)n * sizeof(float) + SHM_ALIGN;
    int err = allocate_window(c->local, bytes, &b->win);
    if (err != MPI_SUCCESS)
        return dist_mpi_error(err, "MPI_Win_allocate_shared(parlm_comm_alloc_shared)");
    parlm_status st = PARLM_OK;
    for (int j = 0; j < c->local_size; j++) {
        b->part[j] = (float *)(void *)window_part(b->win, j, bytes);
        if (!b->part[j])
            st = parlm_error(PARLM_ESYSTEM, "parlm_comm_alloc_shared: cannot map local rank %d's "
                             "part of the window", j);
    }
    if (st == PARLM_OK) {
        b->mine = b->part[c->local_rank];
        memset(b->mine, 0, (size_t)n * sizeof(float)); /* first touch by the owner */
    }
    err = MPI_Win_lock_all(MPI_MODE_NOCHECK, b->win);
    if (st == PARLM_OK && err != MPI_SUCCESS)
        st = dist_mpi_error(err, "MPI_Win_lock_all(parlm_comm_alloc_shared)");
    return st;
}
