/* lib/parallel/dp_async.c — bounded-staleness data parallelism (stale synchronous
 * parallel, Ho et al. 2013): the parameters, the AdamW moments and S+1 gradient slots per
 * rank live in one shared store. The idea to know: step c's gradients go into slot
 * c mod (S+1); the rank whose push completes step c applies update c (rank-ordered mean,
 * clipping, AdamW: the synchronous step's arithmetic) once update c-1 is in; a rank starts
 * step c only when updates 0 .. c-S-1 are in, so no rank runs more than S steps ahead of
 * the slowest, a slot is free again when it is reused, and S = 0 is synchronous training
 * bit for bit. Readers copy the parameters under a seqlock (seq = 2 x version, odd while
 * an update is written).
 * The store: on one node, a shared-memory region (parlm_node_region) read and written in
 * place with C11 atomics; across nodes (or when asked: PARLM_ALGO_MPI, or when the node
 * cannot share that much memory), an MPI-3 window on rank 0 reached by passive-target RMA (MPI_Get, MPI_Put, MPI_Fetch_and_op and
 * MPI_Accumulate in one MPI_Win_lock_all epoch, each access completed by MPI_Win_flush). */
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../base/error.h"
#include "dp_async.h"

#define LINE 64
/* the store's layout (bytes): seq, failed, the newest norm (as float bits), the model's
 * step at version 0, stopped, one line each; the S+1 push counters, one line each; then
 * floats: parameters, first and second moments, the slots [S+1][ranks][P] */
enum { OFF_SEQ = 0, OFF_FAILED = LINE, OFF_NORM = 2 * LINE, OFF_BASE = 3 * LINE,
       OFF_STOP = 4 * LINE, OFF_COUNT = 5 * LINE };

struct dp_async {
    parlm_gpt *m;
    parlm_comm *comm;
    MPI_Comm mc;
    int rank, size, S;
    int64_t P;
    int rma;                   /* 1: the store is rank 0's window, reached through RMA */
    parlm_node_region *region; /* shared memory: the store at base */
    char *base;
    MPI_Win win;               /* RMA */
    float *scratch;            /* RMA: P floats (a slot being summed) */
    size_t off_params, off_m1, off_m2, off_slots;
    int64_t base_step;
    int64_t next;              /* steps this rank pushed (the index of its next step) */
    int64_t have;              /* version of the parameters in the model */
    double wait;               /* seconds the last step waited */
    int drained;               /* dp_async_drain, and no step since: the ranks are together */
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* waiting: the ranks may outnumber the cores, so yield, then sleep briefly */
static void backoff(int *spins)
{
    if (++*spins < 64) {
        sched_yield();
    } else {
        struct timespec ts = {0, 20000};
        nanosleep(&ts, NULL);
    }
}

static parlm_status mpi_failed(int err, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(err, msg, &len);
    return parlm_error(PARLM_ESYSTEM, "asynchronous data parallelism: %s: %s", what, msg);
}

/* ---- the store: plain memory and atomics, or RMA on rank 0's window ---- */

static parlm_status flush(dp_async *a, int err, const char *what)
{
    if (err == MPI_SUCCESS)
        err = MPI_Win_flush(0, a->win);
    return err == MPI_SUCCESS ? PARLM_OK : mpi_failed(err, what);
}

static parlm_status get(dp_async *a, size_t off, void *dst, size_t bytes)
{
    if (!a->rma) {
        memcpy(dst, a->base + off, bytes);
        return PARLM_OK;
    }
    for (size_t done = 0; done < bytes;) {
        int n = bytes - done < ((size_t)1 << 30) ? (int)(bytes - done) : 1 << 30;
        int err = MPI_Get((char *)dst + done, n, MPI_BYTE, 0, (MPI_Aint)(off + done), n,
                          MPI_BYTE, a->win);
        parlm_status st = flush(a, err, "MPI_Get");
        if (st != PARLM_OK)
            return st;
        done += (size_t)n;
    }
    return PARLM_OK;
}

static parlm_status put(dp_async *a, size_t off, const void *src, size_t bytes)
{
    if (!a->rma) {
        memcpy(a->base + off, src, bytes);
        return PARLM_OK;
    }
    for (size_t done = 0; done < bytes;) {
        int n = bytes - done < ((size_t)1 << 30) ? (int)(bytes - done) : 1 << 30;
        int err = MPI_Put((const char *)src + done, n, MPI_BYTE, 0, (MPI_Aint)(off + done), n,
                          MPI_BYTE, a->win);
        parlm_status st = flush(a, err, "MPI_Put");
        if (st != PARLM_OK)
            return st;
        done += (size_t)n;
    }
    return PARLM_OK;
}

/* the floats at off: in place (shared memory) or fetched into buf (RMA) */
static parlm_status view(dp_async *a, size_t off, float *buf, const float **out)
{
    if (!a->rma) {
        *out = (const float *)(a->base + off);
        return PARLM_OK;
    }
    *out = buf;
    return get(a, off, buf, (size_t)a->P * sizeof(float));
}

static _Atomic int64_t *word(const dp_async *a, size_t off)
{
    return (_Atomic int64_t *)(a->base + off);
}

/* *old = the word at off; then it is old + add (acquire-release) */
static parlm_status fetch_add(dp_async *a, size_t off, int64_t add, int64_t *old)
{
    if (!a->rma) {
        *old = atomic_fetch_add_explicit(word(a, off), add, memory_order_acq_rel);
        return PARLM_OK;
    }
    return flush(a, MPI_Fetch_and_op(&add, old, MPI_INT64_T, 0, (MPI_Aint)off, MPI_SUM, a->win),
                 "MPI_Fetch_and_op");
}

static parlm_status load(dp_async *a, size_t off, int64_t *v)
{
    if (!a->rma) {
        *v = atomic_load_explicit(word(a, off), memory_order_acquire);
        return PARLM_OK;
    }
    int64_t none = 0;
    return flush(a, MPI_Fetch_and_op(&none, v, MPI_INT64_T, 0, (MPI_Aint)off, MPI_NO_OP, a->win),
                 "MPI_Fetch_and_op");
}

static parlm_status store(dp_async *a, size_t off, int64_t v)
{
    if (!a->rma) {
        atomic_store_explicit(word(a, off), v, memory_order_release);
        return PARLM_OK;
    }
    return flush(a, MPI_Accumulate(&v, 1, MPI_INT64_T, 0, (MPI_Aint)off, 1, MPI_INT64_T,
                                   MPI_REPLACE, a->win), "MPI_Accumulate");
}

static size_t counter(const dp_async *a, int64_t step)
{
    return OFF_COUNT + (size_t)(step % (a->S + 1)) * LINE;
}

static size_t slot(const dp_async *a, int64_t step, int rank)
{
    size_t i = (size_t)(step % (a->S + 1)) * (size_t)a->size + (size_t)rank;
    return a->off_slots + i * (size_t)a->P * sizeof(float);
}

/* after an error of this rank: the others stop waiting (best effort) */
static parlm_status fail(dp_async *a, parlm_status st)
{
    char why[512];
    snprintf(why, sizeof why, "%s", parlm_last_error());
    (void)store(a, OFF_FAILED, 1);
    return parlm_error(st, "%s", why);
}

static parlm_status check_peers(dp_async *a)
{
    int64_t failed = 0;
    parlm_status st = load(a, OFF_FAILED, &failed);
    if (st == PARLM_OK && failed)
        st = parlm_error(PARLM_EINVAL, "asynchronous data parallelism: another rank's "
                         "update failed (see its message)");
    return st;
}

/* ---- creation ---- */

/* The store of `bytes`: a node region, or (rma, or a communicator spanning nodes) rank 0's
 * window. Collective; the same outcome on every rank. */
static parlm_status open_store(dp_async *a, size_t bytes, int rma)
{
    /* (a node that cannot share this much memory falls back to the window too) */
    if (!rma && parlm_node_region_create(&a->region, a->comm, bytes) == PARLM_OK) {
        a->base = parlm_node_region_base(a->region);
        return PARLM_OK;
    }
    a->rma = 1;
    char *mem = NULL;
    int err = MPI_Win_allocate(a->rank == 0 ? (MPI_Aint)bytes : 0, 1, MPI_INFO_NULL, a->mc,
                               &mem, &a->win);
    int ok = err == MPI_SUCCESS, all_ok = 0;
    if (ok) {
        MPI_Win_set_errhandler(a->win, MPI_ERRORS_RETURN);
        if (a->rank == 0)
            memset(mem, 0, bytes);
        ok = MPI_Win_lock_all(0, a->win) == MPI_SUCCESS;
    }
    if (MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, a->mc) != MPI_SUCCESS || !all_ok) {
        if (err == MPI_SUCCESS) {
            if (ok)
                MPI_Win_unlock_all(a->win);
            MPI_Win_free(&a->win);
        }
        a->win = MPI_WIN_NULL;
        return parlm_error(PARLM_ESYSTEM, "asynchronous data parallelism: MPI could not make "
                           "a window of %zu bytes on rank 0", bytes);
    }
    a->scratch = malloc((size_t)a->P * sizeof(float));
    ok = a->scratch != NULL;
    if (MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, a->mc) != MPI_SUCCESS || !all_ok)
        return parlm_error(PARLM_ENOMEM, "asynchronous data parallelism: %lld floats of "
                           "scratch", (long long)a->P);
    return PARLM_OK;
}

/* Collective. */
static void close_store(dp_async *a)
{
    if (a->region)
        parlm_node_region_free(a->region);
    if (a->win != MPI_WIN_NULL) {
        MPI_Win_unlock_all(a->win);
        MPI_Win_free(&a->win);
    }
    free(a->scratch);
    a->region = NULL, a->win = MPI_WIN_NULL, a->scratch = NULL;
}

parlm_status dp_async_create(dp_async **out, parlm_gpt *m, parlm_comm *comm, int staleness,
                             int rma)
{
    if (!out || !m || !comm || staleness < 0 || staleness > 1024)
        return parlm_error(PARLM_EINVAL, "dp_async_create: null argument or staleness %d "
                           "outside 0..1024", staleness);
    *out = NULL;
    MPI_Comm mc;
    parlm_status st = parlm_comm_get_mpi(comm, &mc);
    if (st != PARLM_OK)
        return st;
    /* every rank takes part in the collectives below; a rank short of memory says so in
     * the vote at the end */
    dp_async *a = calloc(1, sizeof *a);
    dp_async spare;
    memset(&spare, 0, sizeof spare);
    int mine_ok = a != NULL;
    if (!a)
        a = &spare;
    a->m = m, a->comm = comm, a->mc = mc, a->win = MPI_WIN_NULL;
    a->rank = parlm_comm_rank(comm), a->size = parlm_comm_size(comm), a->S = staleness;
    a->P = parlm_gpt_num_params(m);
    size_t fbytes = (size_t)a->P * sizeof(float);
    a->off_params = OFF_COUNT + (size_t)(staleness + 1) * LINE;
    a->off_m1 = a->off_params + fbytes;
    a->off_m2 = a->off_m1 + fbytes;
    a->off_slots = a->off_m2 + fbytes;
    size_t bytes = a->off_slots + (size_t)(staleness + 1) * (size_t)a->size * fbytes;
    st = open_store(a, bytes, rma);
    if (st == PARLM_OK && a->rank == 0) { /* rank 0's parameters and moments (zeros: fresh) */
        st = put(a, a->off_params, parlm_gpt_params(m), fbytes);
        if (st == PARLM_OK && parlm_gpt_adam_m(m))
            st = put(a, a->off_m1, parlm_gpt_adam_m(m), fbytes);
        if (st == PARLM_OK && parlm_gpt_adam_v(m))
            st = put(a, a->off_m2, parlm_gpt_adam_v(m), fbytes);
        if (st == PARLM_OK)
            st = store(a, OFF_BASE, parlm_gpt_get_step(m));
    }
    int ok = st == PARLM_OK && mine_ok, all_ok = 0;
    if (MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, mc) != MPI_SUCCESS)
        all_ok = 0;
    if (all_ok)
        st = load(a, OFF_BASE, &a->base_step);
    if (!all_ok || st != PARLM_OK) {
        parlm_status why = st != PARLM_OK ? st
                         : !mine_ok ? parlm_error(PARLM_ENOMEM, "dp_async_create: out of memory")
                                    : parlm_error(PARLM_ESYSTEM, "dp_async_create: failed on "
                                                  "another rank");
        close_store(a);
        if (a != &spare)
            free(a);
        return why;
    }
    *out = a;
    return PARLM_OK;
}

void dp_async_free(dp_async *a)
{
    if (!a)
        return;
    close_store(a);
    free(a);
}

int dp_async_uses_rma(const dp_async *a) { return a && a->rma; }

/* ---- the step ---- */

/* Update c, by the rank that completed step c: once update c-1 is in, the mean of the
 * slots in rank order scaled by 1/size (the synchronous all-reduce's arithmetic) becomes
 * the model's gradients, the stored parameters and moments its own, and the model's fused
 * optimizer step runs; the result is published under the seqlock. */
static parlm_status apply(dp_async *a, int64_t c, const parlm_adamw_cfg *cfg, float clip,
                          float *norm)
{
    int spins = 0;
    double t0 = now();
    for (;;) {
        int64_t seq;
        parlm_status st = load(a, OFF_SEQ, &seq);
        if (st == PARLM_OK)
            st = check_peers(a);
        if (st != PARLM_OK)
            return st;
        if (seq == 2 * c)
            break;
        backoff(&spins);
    }
    a->wait += now() - t0;
    parlm_gpt *m = a->m;
    size_t bytes = (size_t)a->P * sizeof(float);
    float *g = parlm_gpt_grads(m);
    const float *x;
    parlm_status st = get(a, slot(a, c, 0), g, bytes);
    for (int r = 1; r < a->size && st == PARLM_OK; r++) {
        if ((st = view(a, slot(a, c, r), a->scratch, &x)) != PARLM_OK)
            break;
        for (int64_t i = 0; i < a->P; i++)
            g[i] += x[i];
    }
    if (st == PARLM_OK && a->size > 1) {
        float scale = 1.0f / (float)a->size;
        for (int64_t i = 0; i < a->P; i++)
            g[i] *= scale;
    }
    /* the slot is consumed: its next pushes (step c+S+1) come after this update is seen */
    if (st == PARLM_OK)
        st = store(a, counter(a, c), 0);
    if (st == PARLM_OK)
        st = parlm_gpt_init_optimizer(m);
    if (st == PARLM_OK)
        st = get(a, a->off_params, parlm_gpt_params(m), bytes);
    if (st == PARLM_OK)
        st = get(a, a->off_m1, parlm_gpt_adam_m(m), bytes);
    if (st == PARLM_OK)
        st = get(a, a->off_m2, parlm_gpt_adam_v(m), bytes);
    if (st == PARLM_OK)
        st = parlm_gpt_set_step(m, a->base_step + c);
    if (st == PARLM_OK)
        st = parlm_gpt_optimizer_step(m, cfg, clip, norm);
    if (st == PARLM_OK)
        st = store(a, OFF_SEQ, 2 * c + 1);
    if (st == PARLM_OK && !a->rma)
        atomic_thread_fence(memory_order_release); /* readers see "odd" before new bytes */
    if (st == PARLM_OK)
        st = put(a, a->off_params, parlm_gpt_params(m), bytes);
    if (st == PARLM_OK)
        st = put(a, a->off_m1, parlm_gpt_adam_m(m), bytes);
    if (st == PARLM_OK)
        st = put(a, a->off_m2, parlm_gpt_adam_v(m), bytes);
    int32_t nb;
    memcpy(&nb, norm, sizeof nb);
    if (st == PARLM_OK)
        st = store(a, OFF_NORM, nb);
    if (st == PARLM_OK)
        st = store(a, OFF_SEQ, 2 * c + 2);
    if (st != PARLM_OK)
        return fail(a, st);
    a->have = c + 1;
    return PARLM_OK;
}

/* Waits until version >= need, then copies the newest parameters into the model unless
 * it holds them already. stoppable: a rank that stopped (dp_async_stop) may never push
 * what the wait needs: PARLM_ECANCELED then. */
static parlm_status fetch(dp_async *a, int64_t need, int stoppable)
{
    int spins = 0;
    double t0 = now();
    parlm_status st = PARLM_OK;
    for (;;) {
        int64_t s1, s2;
        if ((st = load(a, OFF_SEQ, &s1)) != PARLM_OK || (st = check_peers(a)) != PARLM_OK)
            break;
        if ((s1 & 1) || s1 / 2 < need) {
            int64_t stopped = 0;
            if (stoppable && (st = load(a, OFF_STOP, &stopped)) != PARLM_OK)
                break;
            if (stopped) {
                st = parlm_error(PARLM_ECANCELED, "asynchronous data parallelism: another "
                                 "rank stopped before step %lld", (long long)a->next);
                break;
            }
            backoff(&spins);
            continue;
        }
        if (s1 / 2 == a->have)
            break;
        st = get(a, a->off_params, parlm_gpt_params(a->m), (size_t)a->P * sizeof(float));
        if (st != PARLM_OK)
            break;
        if (!a->rma)
            atomic_thread_fence(memory_order_acquire);
        if ((st = load(a, OFF_SEQ, &s2)) != PARLM_OK)
            break;
        if (s2 == s1) {
            a->have = s1 / 2;
            break;
        }
    }
    a->wait += now() - t0;
    return st;
}

parlm_status dp_async_step(dp_async *a, const parlm_adamw_cfg *cfg, float clip, float *norm)
{
    if (!a || !cfg || !norm)
        return parlm_error(PARLM_EINVAL, "dp_async_step: null argument");
    int64_t c = a->next, before = 0;
    a->wait = 0;
    a->drained = 0;
    parlm_status st = put(a, slot(a, c, a->rank), parlm_gpt_grads(a->m),
                          (size_t)a->P * sizeof(float));
    if (st == PARLM_OK)
        st = fetch_add(a, counter(a, c), 1, &before);
    if (st != PARLM_OK)
        return fail(a, st);
    if (before == a->size - 1) {
        st = apply(a, c, cfg, clip, norm);
    } else {
        int64_t nb = 0;
        st = load(a, OFF_NORM, &nb);
        int32_t b32 = (int32_t)nb;
        memcpy(norm, &b32, sizeof b32);
        if (st == PARLM_OK)
            st = parlm_gpt_zero_grad(a->m);
    }
    a->next = c + 1;
    if (st == PARLM_OK)
        st = fetch(a, c + 1 - a->S, 1);
    if (st == PARLM_OK)
        st = parlm_gpt_set_step(a->m, a->base_step + a->next);
    return st;
}

parlm_status dp_async_drain(dp_async *a)
{
    if (!a)
        return parlm_error(PARLM_EINVAL, "dp_async_drain: null argument");
    /* after the barrier every push is in: the updates every rank pushed (all of them,
     * unless the ranks stopped at different steps) are applied or under way */
    int64_t done = a->next;
    int err = MPI_Allreduce(&a->next, &done, 1, MPI_INT64_T, MPI_MIN, a->mc);
    parlm_status st = err == MPI_SUCCESS ? PARLM_OK : mpi_failed(err, "MPI_Allreduce");
    if (st == PARLM_OK)
        st = fetch(a, done, 0);
    a->next = done; /* a rank that pushed more: those steps are dropped */
    if (st == PARLM_OK)
        st = parlm_gpt_init_optimizer(a->m);
    size_t bytes = (size_t)a->P * sizeof(float);
    if (st == PARLM_OK)
        st = get(a, a->off_m1, parlm_gpt_adam_m(a->m), bytes);
    if (st == PARLM_OK)
        st = get(a, a->off_m2, parlm_gpt_adam_v(a->m), bytes);
    if (st == PARLM_OK)
        st = parlm_gpt_set_step(a->m, a->base_step + done);
    /* nobody writes again before every rank has read */
    parlm_status bst = parlm_comm_barrier(a->comm);
    a->drained = st == PARLM_OK && bst == PARLM_OK;
    return st != PARLM_OK ? st : bst;
}

parlm_status dp_async_stop(dp_async *a)
{
    return a ? store(a, OFF_STOP, 1) : PARLM_OK;
}

int dp_async_drained(const dp_async *a) { return a && a->drained; }

void dp_async_state(const dp_async *a, int64_t *version, int64_t *staleness, double *wait)
{
    *version = a ? a->have : 0;
    *staleness = a ? a->next - a->have : 0;
    *wait = a ? a->wait : 0;
}
