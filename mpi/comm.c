/* mpi/comm.c — MPI start-up helpers and the parlm_comm: a private duplicate of the
 * caller's communicator, split into nodes (ranks sharing memory) and node leaders,
 * with the scratch every collective needs allocated once, here. Creation ends with an
 * all-rank vote, so a failure on one rank fails creation on all (no rank is left
 * waiting in a collective the others abandoned). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../base/error.h"
#include "comm.h"

/* ---- start-up ------------------------------------------------------------------- */

static int thread_level_to_parlm(int mpi_level)
{
    if (mpi_level == MPI_THREAD_MULTIPLE)
        return PARLM_THREAD_MULTIPLE;
    if (mpi_level == MPI_THREAD_SERIALIZED)
        return PARLM_THREAD_SERIALIZED;
    if (mpi_level == MPI_THREAD_FUNNELED)
        return PARLM_THREAD_FUNNELED;
    return PARLM_THREAD_SINGLE;
}

const char *parlm_thread_level_name(int level)
{
    switch (level) {
    case PARLM_THREAD_SINGLE: return "single";
    case PARLM_THREAD_FUNNELED: return "funneled";
    case PARLM_THREAD_SERIALIZED: return "serialized";
    case PARLM_THREAD_MULTIPLE: return "multiple";
    }
    return "?";
}

parlm_status parlm_dist_init(int *argc, char ***argv, int *provided)
{
    int inited = 0, finalized = 0, level = MPI_THREAD_SINGLE;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (finalized)
        return parlm_error(PARLM_EINVAL, "parlm_dist_init: MPI was already finalized");
    int err = inited ? MPI_Query_thread(&level)
                     : MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &level);
    if (err != MPI_SUCCESS)
        return dist_mpi_error(err, inited ? "MPI_Query_thread" : "MPI_Init_thread");
    if (provided)
        *provided = thread_level_to_parlm(level);
    return PARLM_OK;
}

parlm_status parlm_dist_finalize(void)
{
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (!inited || finalized)
        return PARLM_OK;
    int err = MPI_Finalize();
    return err == MPI_SUCCESS ? PARLM_OK : dist_mpi_error(err, "MPI_Finalize");
}

/* ---- creation ------------------------------------------------------------------- */

static void comm_release(parlm_comm *c, int mpi_alive)
{
    dist_node_free(&c->node, mpi_alive);
    if (mpi_alive) {
        if (c->leaders != MPI_COMM_NULL)
            MPI_Comm_free(&c->leaders);
        if (c->node.local != MPI_COMM_NULL)
            MPI_Comm_free(&c->node.local);
        if (c->comm != MPI_COMM_NULL)
            MPI_Comm_free(&c->comm);
    }
    dist_ring_scratch_free(&c->ring);
    dist_rd_scratch_free(&c->rd);
    free(c->counts);
    free(c->displs);
    free(c->agree);
    for (int i = 0; i < c->n_owned; i++)
        free(c->owned[i]);
    free(c->owned);
    free(c);
}

/* cfg (NULL: defaults) -> c->cfg with the defaults filled in; the same on every rank, so
 * a bad field fails creation everywhere before any communication. */
static parlm_status set_config(parlm_comm *c, const parlm_comm_config *cfg)
{
    parlm_comm_config k = {0};
    if (cfg)
        k = *cfg;
    if (k.algo > PARLM_ALGO_MPI)
        return parlm_error(PARLM_EINVAL, "parlm_comm: cfg.algo = %u is not a PARLM_ALGO_* "
                           "(auto, ring, shm, rd or mpi)", k.algo);
    if (!k.ring_chunk)
        k.ring_chunk = DIST_RING_CHUNK_DEFAULT;
    if (!k.shm_chunk)
        k.shm_chunk = DIST_SHM_CHUNK_DEFAULT;
    if (!k.shm_nbuf)
        k.shm_nbuf = DIST_SHM_NBUF_DEFAULT;
    const int64_t chunk[2] = {k.ring_chunk, k.shm_chunk};
    for (int i = 0; i < 2; i++)
        if (chunk[i] < PARLM_COMM_CHUNK_MIN || chunk[i] > PARLM_COMM_CHUNK_MAX)
            return parlm_error(PARLM_EINVAL, "parlm_comm: cfg.%s wants a chunk of %d .. 2^26 "
                               "floats, got %lld", i ? "shm_chunk" : "ring_chunk",
                               PARLM_COMM_CHUNK_MIN, (long long)chunk[i]);
    if (k.shm_nbuf < PARLM_SHM_NBUF_MIN || k.shm_nbuf > PARLM_SHM_NBUF_MAX)
        return parlm_error(PARLM_EINVAL, "parlm_comm: cfg.shm_nbuf wants %d .. %d, got %lld",
                           PARLM_SHM_NBUF_MIN, PARLM_SHM_NBUF_MAX, (long long)k.shm_nbuf);
    c->cfg = k;
    c->node.shm_chunk = k.shm_chunk;
    c->node.shm_nbuf = k.shm_nbuf;
    return PARLM_OK;
}

/* Node split, leaders and layout. Collective over c->comm. */
static parlm_status split_nodes(parlm_comm *c, int ranks_per_node)
{
    int err = ranks_per_node > 0
                  ? MPI_Comm_split(c->comm, c->rank / ranks_per_node, c->rank, &c->node.local)
                  : MPI_Comm_split_type(c->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL,
                                        &c->node.local);
    if (err != MPI_SUCCESS)
        return dist_mpi_error(err, "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)");
    MPI_Comm_set_errhandler(c->node.local, MPI_ERRORS_RETURN);
    MPI_Comm_rank(c->node.local, &c->node.local_rank);
    MPI_Comm_size(c->node.local, &c->node.local_size);
    err = MPI_Comm_split(c->comm, c->node.local_rank == 0 ? 0 : MPI_UNDEFINED, c->rank, &c->leaders);
    if (err != MPI_SUCCESS)
        return dist_mpi_error(err, "MPI_Comm_split(leaders)");
    int layout[2] = {0, 0}; /* node index, node count: known to leaders, told to the node */
    if (c->leaders != MPI_COMM_NULL) {
        MPI_Comm_set_errhandler(c->leaders, MPI_ERRORS_RETURN);
        MPI_Comm_rank(c->leaders, &layout[0]);
        MPI_Comm_size(c->leaders, &layout[1]);
    }
    err = MPI_Bcast(layout, 2, MPI_INT, 0, c->node.local);
    if (err != MPI_SUCCESS)
        return dist_mpi_error(err, "MPI_Bcast(node layout)");
    c->node_index = layout[0];
    c->node.nodes = layout[1];
    /* oversubscription is about the real node, even when nodes are faked */
    int node_ranks = c->node.local_size;
    if (ranks_per_node > 0) {
        MPI_Comm real;
        err = MPI_Comm_split_type(c->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &real);
        if (err != MPI_SUCCESS)
            return dist_mpi_error(err, "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)");
        MPI_Comm_size(real, &node_ranks);
        MPI_Comm_free(&real);
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    c->node.oversubscribed = cpus > 0 && node_ranks > cpus;
    c->node.node_ranks = node_ranks;
    c->node.cpus = cpus > 0 ? (int)cpus : 0;
    return PARLM_OK;
}

static parlm_status alloc_scratch(parlm_comm *c)
{
    c->counts = malloc((size_t)c->size * sizeof(int));
    c->displs = malloc((size_t)c->size * sizeof(int));
    c->agree = malloc((size_t)c->size * sizeof(uint64_t));
    if (!c->counts || !c->displs || !c->agree)
        return parlm_error(PARLM_ENOMEM, "parlm_comm: cannot allocate collective scratch");
    parlm_status st = dist_ring_scratch_alloc(&c->ring, c->cfg.ring_chunk);
    return st == PARLM_OK ? dist_node_alloc(&c->node) : st;
}

/* Collective: st from every rank -> the first failure, on every rank (the failing rank
 * keeps its own message; the others name it). */
static parlm_status vote(parlm_comm *c, parlm_status st)
{
    char why[256];
    snprintf(why, sizeof why, "%s", st == PARLM_OK ? "" : parlm_last_error());
    int mine = st == PARLM_OK ? c->size : c->rank, first_bad = c->size;
    int err = MPI_Allreduce(&mine, &first_bad, 1, MPI_INT, MPI_MIN, c->comm);
    if (err != MPI_SUCCESS)
        return dist_mpi_error(err, "MPI_Allreduce(creation vote)");
    if (st != PARLM_OK)
        return parlm_error(st, "%s", why);
    if (first_bad < c->size)
        return parlm_error(PARLM_ESYSTEM, "parlm_comm: creation failed on rank %d", first_bad);
    return PARLM_OK;
}

parlm_status dist_comm_create(parlm_comm **out, MPI_Comm base, int ranks_per_node,
                              const parlm_comm_config *cfg)
{
    if (!out)
        return parlm_error(PARLM_EINVAL, "parlm_comm: out is NULL");
    *out = NULL;
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (!inited || finalized)
        return parlm_error(PARLM_EINVAL, "parlm_comm: MPI is %s (call parlm_dist_init first)",
                           finalized ? "finalized" : "not initialized");
    if (base == MPI_COMM_NULL)
        return parlm_error(PARLM_EINVAL, "parlm_comm: the MPI communicator is MPI_COMM_NULL");
    parlm_comm *c = calloc(1, sizeof *c);
    if (!c)
        return parlm_error(PARLM_ENOMEM, "parlm_comm: out of memory");
    c->comm = c->node.local = c->leaders = MPI_COMM_NULL;
    c->node.win = MPI_WIN_NULL;
    parlm_status st = set_config(c, cfg);
    if (st != PARLM_OK) {
        comm_release(c, 0);
        return st;
    }
    int err = MPI_Comm_dup(base, &c->comm);
    if (err != MPI_SUCCESS) {
        c->comm = MPI_COMM_NULL;
        comm_release(c, 1);
        return dist_mpi_error(err, "MPI_Comm_dup");
    }
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(c->comm, &c->rank);
    MPI_Comm_size(c->comm, &c->size);
    st = split_nodes(c, ranks_per_node);
    if (st != PARLM_OK) { /* MPI failed in a collective: every rank sees it */
        comm_release(c, 1);
        return st;
    }
    /* each rank may fail locally (memory): vote before the next collective step */
    st = vote(c, alloc_scratch(c));
    if (st == PARLM_OK && c->node.local_size > 1)
        st = vote(c, dist_shm_setup(&c->node));
    if (st == PARLM_OK && c->node.local_size > 1) {
        /* every rank must pick the same algorithms: use the window only if all can */
        int have = c->node.have_win;
        int err2 = MPI_Allreduce(&have, &c->node.have_win, 1, MPI_INT, MPI_MIN, c->comm);
        if (err2 != MPI_SUCCESS)
            st = dist_mpi_error(err2, "MPI_Allreduce(shared-memory vote)");
    }
    if (st != PARLM_OK) {
        comm_release(c, 1);
        return st;
    }
    *out = c;
    return PARLM_OK;
}

parlm_status parlm_comm_world(parlm_comm **out, const parlm_comm_config *cfg)
{
    return dist_comm_create(out, MPI_COMM_WORLD, 0, cfg);
}

parlm_status parlm_comm_from_mpi(parlm_comm **out, const void *mpi_comm_ptr,
                                 const parlm_comm_config *cfg)
{
    if (out)
        *out = NULL;
    if (!mpi_comm_ptr)
        return parlm_error(PARLM_EINVAL, "parlm_comm_from_mpi: mpi_comm_ptr is NULL");
    return dist_comm_create(out, *(const MPI_Comm *)mpi_comm_ptr, 0, cfg);
}

parlm_status parlm_comm_get_config(const parlm_comm *c, parlm_comm_config *out)
{
    if (!c || !out)
        return parlm_error(PARLM_EINVAL, "parlm_comm_get_config: NULL argument");
    *out = c->cfg;
    return PARLM_OK;
}

parlm_status parlm_comm_free(parlm_comm *c)
{
    if (!c)
        return PARLM_OK;
    int finalized = 0;
    MPI_Finalized(&finalized);
    parlm_status st = finalized ? PARLM_OK : dist_drain(c);
    comm_release(c, !finalized);
    return st;
}

/* ---- buffers in shared memory -------------------------------------------------------- */

parlm_status parlm_comm_alloc_shared(parlm_comm *c, int64_t n, float **out)
{
    if (out)
        *out = NULL;
    if (!c || !out || n < 1 || (uint64_t)n > (SIZE_MAX - 64) / sizeof(float))
        return parlm_error(PARLM_EINVAL, "parlm_comm_alloc_shared: need a comm, out and 1 <= n "
                           "(got %lld)", (long long)n);
    parlm_status st = PARLM_OK;
    if (c->node.n_shared == c->node.cap_shared) {
        int cap = c->node.cap_shared ? 2 * c->node.cap_shared : 4;
        dist_shared_buf *nb = realloc(c->node.shared, (size_t)cap * sizeof *nb);
        if (nb)
            c->node.shared = nb, c->node.cap_shared = cap;
        else
            st = parlm_error(PARLM_ENOMEM, "parlm_comm_alloc_shared: out of memory");
    }
    dist_shared_buf *b = st == PARLM_OK ? &c->node.shared[c->node.n_shared] : NULL;
    if (b) {
        memset(b, 0, sizeof *b);
        b->win = MPI_WIN_NULL;
        b->n = n;
        b->part = calloc((size_t)c->node.local_size, sizeof *b->part);
        if (!b->part)
            st = parlm_error(PARLM_ENOMEM, "parlm_comm_alloc_shared: out of memory");
    }
    if ((st = vote(c, st)) != PARLM_OK) { /* every rank returns; no window was made */
        if (b)
            dist_shared_unmap(b, 1);
        return st;
    }
    if (c->node.have_win && c->node.local_size > 1) {
        /* a window the node's ranks read from each other; if MPI cannot make one, or its
         * file system looks too small (pages of a full tmpfs fault with SIGBUS instead of
         * failing the allocation), every rank falls back to private memory together */
        if (vote(c, dist_shm_room(&c->node, (size_t)n * sizeof(float) + 64)) != PARLM_OK || vote(c, dist_shared_map(&c->node, b, n)) != PARLM_OK) {
            dist_shared_unmap(b, 1);
            b->n = n;
            b->part = calloc((size_t)c->node.local_size, sizeof *b->part);
        }
    }
    if (b->win == MPI_WIN_NULL) {
        size_t bytes = ((size_t)n * sizeof(float) + 63) / 64 * 64;
        b->mine = aligned_alloc(64, bytes);
        if (b->mine)
            memset(b->mine, 0, (size_t)n * sizeof(float));
        st = b->mine && b->part ? PARLM_OK
                                : parlm_error(PARLM_ENOMEM, "parlm_comm_alloc_shared: %lld floats",
                                              (long long)n);
        if ((st = vote(c, st)) != PARLM_OK) {
            dist_shared_unmap(b, 1);
            return st;
        }
    }
    c->node.n_shared++;
    *out = b->mine;
    return PARLM_OK;
}

parlm_status parlm_comm_free_shared(parlm_comm *c, float *p)
{
    if (!c)
        return parlm_error(PARLM_EINVAL, "parlm_comm_free_shared: comm is NULL");
    if (!p)
        return PARLM_OK;
    int i = 0;
    while (i < c->node.n_shared && c->node.shared[i].mine != p)
        i++;
    if (i == c->node.n_shared)
        return parlm_error(PARLM_EINVAL, "parlm_comm_free_shared: %p is not from "
                           "parlm_comm_alloc_shared on this communicator", (void *)p);
    parlm_status st = dist_drain(c); /* nothing may still read it */
    dist_shared_unmap(&c->node.shared[i], 1);
    c->node.shared[i] = c->node.shared[--c->node.n_shared];
    return st;
}

/* ---- layout ------------------------------------------------------------------------ */

int parlm_comm_rank(const parlm_comm *c) { return c ? c->rank : -1; }
int parlm_comm_size(const parlm_comm *c) { return c ? c->size : -1; }
int parlm_comm_local_rank(const parlm_comm *c) { return c ? c->node.local_rank : -1; }
int parlm_comm_local_size(const parlm_comm *c) { return c ? c->node.local_size : -1; }
int parlm_comm_node(const parlm_comm *c) { return c ? c->node_index : -1; }
int parlm_comm_nodes(const parlm_comm *c) { return c ? c->node.nodes : -1; }

parlm_status parlm_comm_get_mpi(const parlm_comm *c, void *mpi_comm_out)
{
    if (!c || !mpi_comm_out)
        return parlm_error(PARLM_EINVAL, "parlm_comm_get_mpi: NULL argument");
    *(MPI_Comm *)mpi_comm_out = c->comm;
    return PARLM_OK;
}

/* ---- small blocking collectives ----------------------------------------------------------- */

parlm_status parlm_comm_barrier(parlm_comm *c)
{
    if (!c)
        return parlm_error(PARLM_EINVAL, "parlm_comm_barrier: comm is NULL");
    int err = MPI_Barrier(c->comm);
    return err == MPI_SUCCESS ? PARLM_OK : dist_mpi_error(err, "MPI_Barrier");
}

parlm_status parlm_comm_bcast(parlm_comm *c, void *buf, size_t bytes, int root)
{
    if (!c)
        return parlm_error(PARLM_EINVAL, "parlm_comm_bcast: comm is NULL");
    if (root < 0 || root >= c->size)
        return parlm_error(PARLM_EINVAL, "parlm_comm_bcast: root %d is not a rank of 0..%d",
                           root, c->size - 1);
    if (!buf && bytes > 0)
        return parlm_error(PARLM_EINVAL, "parlm_comm_bcast: buf is NULL with %zu bytes", bytes);
    char *p = buf;
    while (bytes > 0) {
        size_t piece = bytes < ((size_t)1 << 30) ? bytes : ((size_t)1 << 30);
        int err = MPI_Bcast(p, (int)piece, MPI_BYTE, root, c->comm);
        if (err != MPI_SUCCESS)
            return dist_mpi_error(err, "MPI_Bcast");
        p += piece;
        bytes -= piece;
    }
    return PARLM_OK;
}

parlm_status parlm_comm_check_agree(parlm_comm *c, const char *field, uint64_t value)
{
    if (!c || !field)
        return parlm_error(PARLM_EINVAL, "parlm_comm_check_agree: %s is NULL",
                           c ? "field" : "comm");
    int err = MPI_Allgather(&value, 1, MPI_UINT64_T, c->agree, 1, MPI_UINT64_T, c->comm);
    if (err != MPI_SUCCESS)
        return dist_mpi_error(err, "MPI_Allgather(check_agree)");
    const uint64_t ref = c->agree[0];
    int bad = 0;
    for (int r = 1; r < c->size; r++)
        bad += c->agree[r] != ref;
    if (!bad)
        return PARLM_OK;
    char msg[480];
    int len = snprintf(msg, sizeof msg,
                       "'%s' differs across ranks: rank 0 has %" PRIu64 " (0x%" PRIx64
                       "), %d of %d ranks differ:",
                       field, ref, ref, bad, c->size);
    int listed = 0;
    for (int r = 1; r < c->size && len < (int)sizeof msg; r++) {
        if (c->agree[r] == ref)
            continue;
        if (listed++ == 8) {
            len += snprintf(msg + len, sizeof msg - (size_t)len, " ...");
            break;
        }
        len += snprintf(msg + len, sizeof msg - (size_t)len, " rank %d has %" PRIu64 " (0x%" PRIx64 ")%s",
                        r, c->agree[r], c->agree[r], listed < bad && listed < 8 ? "," : "");
    }
    return parlm_error(PARLM_EINVAL, "%s", msg);
}
