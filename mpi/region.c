/* mpi/region.c — one block of memory that every rank of a single-node communicator maps
 * (parlm/dist.h, parlm_node_region): an MPI-3 shared-memory window whose parts, one per
 * rank, are contiguous, so the ranks see one buffer but each part is first touched (and
 * placed) by its own rank. Accesses are plain loads, stores and C11 atomics inside one
 * MPI_Win_lock_all epoch, as in shm.c; the caller synchronizes. */
#include <stdlib.h>
#include <string.h>

#include "../base/error.h"
#include "comm.h"

#define REGION_PAGE 4096

struct parlm_node_region {
    parlm_comm *comm;
    MPI_Win win;
    char *base;
    size_t bytes;
};

/* rank r's part: ceil(bytes / L) rounded up to pages, so the parts tile the buffer */
static size_t part_bytes(size_t bytes, int L)
{
    size_t per = (bytes + (size_t)L - 1) / (size_t)L;
    return (per + REGION_PAGE - 1) / REGION_PAGE * REGION_PAGE;
}

parlm_status parlm_node_region_create(parlm_node_region **out, parlm_comm *c, size_t bytes)
{
    if (out)
        *out = NULL;
    if (!out || !c || bytes == 0 || bytes > (size_t)1 << 50)
        return parlm_error(PARLM_EINVAL, "parlm_node_region_create: need out, a comm and "
                           "0 < bytes <= 2^50 (got %zu)", bytes);
    if (c->node.nodes > 1 || c->node.local_size != c->size)
        return parlm_error(PARLM_EUNSUPPORTED, "a node region needs every rank of the "
                           "communicator on one node (these %d ranks span %d nodes)", c->size,
                           c->node.nodes);
    size_t part = part_bytes(bytes, c->size);
    /* a full tmpfs faults (SIGBUS) on first touch instead of failing the allocation: look
     * first, and agree (every rank answers for the same file system) */
    int room = dist_shm_room(&c->node, part) == PARLM_OK, all_room = 0;
    if (MPI_Allreduce(&room, &all_room, 1, MPI_INT, MPI_MIN, c->comm) != MPI_SUCCESS ||
        !all_room)
        return parlm_error(PARLM_ENOMEM, "parlm_node_region_create: %zu bytes do not fit in "
                           "the node's shared memory", bytes);
    parlm_node_region *r = calloc(1, sizeof *r);
    int ok = r != NULL, all_ok = 0;
    MPI_Win win = MPI_WIN_NULL;
    char *mine = NULL;
    /* collective from here on: every rank makes the calls, then they vote */
    int err = MPI_Win_allocate_shared(ok ? (MPI_Aint)part : 0, 1, MPI_INFO_NULL, c->comm,
                                      &mine, &win);
    ok = ok && err == MPI_SUCCESS;
    MPI_Aint size0 = 0;
    int disp = 1;
    char *base = NULL;
    if (err == MPI_SUCCESS) {
        MPI_Win_set_errhandler(win, MPI_ERRORS_RETURN);
        if (MPI_Win_shared_query(win, 0, &size0, &disp, &base) != MPI_SUCCESS || !base)
            ok = 0;
        if (MPI_Win_lock_all(MPI_MODE_NOCHECK, win) != MPI_SUCCESS)
            ok = 0;
        if (ok && mine)
            memset(mine, 0, part); /* first touch: this rank's part lives near it */
    }
    if (MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, c->comm) != MPI_SUCCESS)
        all_ok = 0;
    if (!all_ok) {
        if (win != MPI_WIN_NULL) {
            MPI_Win_unlock_all(win);
            MPI_Win_free(&win);
        }
        free(r);
        return parlm_error(PARLM_ESYSTEM, "parlm_node_region_create: MPI could not make a "
                           "shared window of %zu bytes over %d ranks", bytes, c->size);
    }
    r->comm = c, r->win = win, r->base = base, r->bytes = bytes;
    *out = r;
    return PARLM_OK;
}

void *parlm_node_region_base(const parlm_node_region *r) { return r ? r->base : NULL; }

size_t parlm_node_region_bytes(const parlm_node_region *r) { return r ? r->bytes : 0; }

void parlm_node_region_free(parlm_node_region *r)
{
    if (!r)
        return;
    MPI_Win_unlock_all(r->win);
    MPI_Win_free(&r->win);
    free(r);
}
