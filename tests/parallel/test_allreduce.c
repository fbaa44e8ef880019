/* tests/test_allreduce.c — the collectives of mpi/ against MPI's own (MPI_Allreduce in
 * double, MPI_Reduce_scatter, MPI_Allgatherv), on every algorithm path and awkward
 * lengths. Every rank runs this Check suite in CK_NOFORK mode under mpirun (see
 * tests/mpi_run.sh). Assertions are collective: each rank reports its own failure on
 * stderr, then all ranks agree (MPI_MIN) and fail together, so no rank is left waiting
 * in a collective the others skipped. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <mpi.h>
#include <omp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../mpi/comm.h"
#include "parlm.h"
#include "../testutil.h"

static int g_rank, g_size;
static parlm_comm *g_world; /* the real layout: one node here */
static parlm_comm *g_fake;  /* fake nodes of 2 ranks (NULL unless size >= 4, even) */

/* Collective verdict: every rank passes its own ok; prints the local reason on failure;
 * returns 1 only if all ranks are ok. */
static int all_ok(int ok, const char *fmt, ...)
{
    if (!ok) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "[rank %d] ", g_rank);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    int all = 0;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all;
}
#define ALL_OK_MSG "a rank failed (its reason is on stderr)"

static uint64_t fnv1a(const void *p, size_t bytes)
{
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < bytes; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

/* 1 on every rank if every rank's buf has the same bits */
static int same_everywhere(const float *x, int64_t n)
{
    uint64_t h = fnv1a(x, (size_t)n * sizeof(float)), lo, hi;
    MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    return lo == hi;
}

/* bf16 rounding computed another way than mpi/reduce.c: 8 significant bits of frexp's
 * mantissa, rounded by nearbyint (ties to even in the default rounding mode). Normal
 * numbers, zeros, infinities and NaN only. */
static float ref_bf16(float f)
{
    if (isnan(f) || isinf(f) || f == 0.0f)
        return f;
    int e;
    double m = frexp((double)f, &e);
    return (float)ldexp(nearbyint(m * 256.0) / 256.0, e);
}

static int is_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (u & 0xffffu) == 0;
}

/* this rank's input for a case: uniform in [-1, 1), different on every rank */
static float *make_input(int64_t n, uint64_t salt)
{
    float *x = tu_alloc_nan(n);
    tu_fill(x, n, salt * 1000003u + (uint64_t)g_rank * 7919u + (uint64_t)n);
    return x;
}

/* Tolerance of one element against the exact (double) reduction ref with
 * mag = sum over ranks of |x|, scaled like the result:
 * - f32: the p-1 additions in another order each err by <= eps/2 of a partial sum
 *   bounded by mag, plus the scaling: p*eps*mag + eps*|ref| bounds it;
 * - bf16 wire: at most p+1 roundings to bf16 (ring: p-1 hops + the owner's final one;
 *   recursive doubling: log2(p) rounds + fold in/out) of values bounded by mag, each
 *   <= 2^-8 relative: (p+2)*2^-8*mag also covers the f32 terms. */
static double tolerance(double ref, double mag, int p, int bf16)
{
    return bf16 ? (p + 2) * ldexp(1.0, -8) * mag
                : p * (double)FLT_EPSILON * mag + (double)FLT_EPSILON * fabs(ref);
}

/* The algorithms' names for messages. */
static const char *flag_name(unsigned flags)
{
    static char s[32];
    snprintf(s, sizeof s, "%s%s", parlm_algo_name(flags & PARLM_ALGO_MASK),
             flags & PARLM_WIRE_BF16 ? "+bf16" : "");
    return s;
}

static MPI_Comm mpi_of(parlm_comm *c)
{
    MPI_Comm m;
    parlm_comm_get_mpi(c, &m);
    return m;
}

/* ---- all-reduce ------------------------------------------------------------------ */

static int check_allreduce(parlm_comm *c, int64_t n, parlm_reduce_op op, unsigned flags)
{
    int p = parlm_comm_size(c), bf16 = (flags & PARLM_WIRE_BF16) != 0;
    float *x = make_input(n, 1 + flags + 17u * (unsigned)op);
    double *ref = malloc((size_t)(n ? n : 1) * sizeof(double));
    double *mag = malloc((size_t)(n ? n : 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++)
        ref[i] = x[i], mag[i] = fabs((double)x[i]);
    MPI_Allreduce(MPI_IN_PLACE, ref, (int)n, MPI_DOUBLE, MPI_SUM, mpi_of(c));
    MPI_Allreduce(MPI_IN_PLACE, mag, (int)n, MPI_DOUBLE, MPI_SUM, mpi_of(c));
    double scale = op == PARLM_REDUCE_AVG ? 1.0 / p : 1.0;
    parlm_status st = parlm_allreduce(c, x, n, op, flags);
    int ok = st == PARLM_OK;
    int64_t bad = -1;
    double worst = 0;
    for (int64_t i = 0; ok && i < n; i++) {
        double want = ref[i] * scale, err = fabs((double)x[i] - want);
        double tol = tolerance(want, mag[i] * scale, p, bf16);
        if (!(err <= tol)) {
            bad = i, worst = err;
            break;
        }
    }
    int res = all_ok(ok && bad < 0, "allreduce %s %s n=%lld: status %d (%s), element %lld off by %g",
                     flag_name(flags), op == PARLM_REDUCE_AVG ? "avg" : "sum", (long long)n, st,
                     parlm_last_error(), (long long)bad, worst);
    res = res && all_ok(same_everywhere(x, n), "allreduce %s n=%lld: ranks differ",
                        flag_name(flags), (long long)n);
    parlm_free(x);
    free(ref);
    free(mag);
    return res;
}

static int check_reduce_scatter(parlm_comm *c, int64_t n, parlm_reduce_op op, unsigned flags);
static int check_all_gather(parlm_comm *c, int64_t n, unsigned flags);

static const unsigned all_algos[] = {PARLM_ALGO_AUTO, PARLM_ALGO_RING, PARLM_ALGO_SHM,
                                     PARLM_ALGO_RD, PARLM_ALGO_MPI};

/* 0, 1, p-1, p+1, primes, around the 64K-float chunks, 10^6+3 */
static int64_t lengths[16];
static int n_lengths;
static void make_lengths(void)
{
    int64_t l[] = {0, 1, g_size - 1, g_size + 1, 7, 13, 1021, 65521, 65537, 131071, 1000003};
    n_lengths = (int)(sizeof l / sizeof l[0]);
    memcpy(lengths, l, sizeof l);
}

START_TEST(allreduce_sum_every_algorithm)
{
    for (size_t a = 0; a < sizeof all_algos / sizeof all_algos[0]; a++)
        for (int i = 0; i < n_lengths; i++)
            ck_assert_msg(check_allreduce(g_world, lengths[i], PARLM_REDUCE_SUM, all_algos[a]),
                          ALL_OK_MSG);
}
END_TEST

START_TEST(allreduce_avg_every_algorithm)
{
    for (size_t a = 0; a < sizeof all_algos / sizeof all_algos[0]; a++)
        for (int i = 0; i < n_lengths; i++)
            ck_assert_msg(check_allreduce(g_world, lengths[i], PARLM_REDUCE_AVG, all_algos[a]),
                          ALL_OK_MSG);
}
END_TEST

START_TEST(allreduce_bf16_wire)
{
    const unsigned algos[] = {PARLM_ALGO_AUTO, PARLM_ALGO_RING, PARLM_ALGO_SHM, PARLM_ALGO_RD};
    for (size_t a = 0; a < sizeof algos / sizeof algos[0]; a++)
        for (int i = 0; i < n_lengths; i++)
            for (int op = 0; op < 2; op++)
                ck_assert_msg(check_allreduce(g_world, lengths[i], (parlm_reduce_op)op,
                                              algos[a] | PARLM_WIRE_BF16),
                              ALL_OK_MSG);
    /* the ring really sent bf16: every result went through the owner's bf16 rounding */
    int64_t n = 4099;
    float *x = make_input(n, 99);
    ck_assert_int_eq(parlm_allreduce(g_world, x, n, PARLM_REDUCE_SUM,
                                     PARLM_ALGO_RING | PARLM_WIRE_BF16),
                     PARLM_OK);
    int rounded = 1;
    for (int64_t i = 0; i < n; i++)
        rounded &= is_bf16(x[i]);
    ck_assert_msg(all_ok(rounded || g_size == 1, "bf16 ring result not bf16-rounded"), ALL_OK_MSG);
    parlm_free(x);
}
END_TEST

/* Small chunks on an existing communicator (its scratch only grows too large, never too
 * small), so lengths straddle chunk and slice boundaries in every path. */
START_TEST(chunk_boundaries)
{
    int64_t ring = g_world->ring.chunk, shm = g_world->node.shm_chunk;
    g_world->ring.chunk = 100;
    g_world->node.shm_chunk = 96;
    int64_t C = 100, P = g_size;
    const int64_t lens[] = {95, 96, 97, 99, 100, 101, C * P - 1, C * P, C * P + 1, 2 * C * P + 3, 5003};
    const unsigned algos[] = {PARLM_ALGO_RING, PARLM_ALGO_SHM, PARLM_ALGO_RING | PARLM_WIRE_BF16};
    for (size_t a = 0; a < sizeof algos / sizeof algos[0]; a++)
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
            ck_assert_msg(check_allreduce(g_world, lens[i], PARLM_REDUCE_AVG, algos[a]), ALL_OK_MSG);
            ck_assert_msg(check_reduce_scatter(g_world, lens[i], PARLM_REDUCE_SUM, algos[a]), ALL_OK_MSG);
            ck_assert_msg(check_all_gather(g_world, lens[i], algos[a]), ALL_OK_MSG);
        }
    if (g_fake) {
        g_fake->ring.chunk = 100;
        g_fake->node.shm_chunk = 96;
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
            ck_assert_msg(check_allreduce(g_fake, lens[i], PARLM_REDUCE_SUM, PARLM_ALGO_SHM), ALL_OK_MSG);
        g_fake->ring.chunk = ring;
        g_fake->node.shm_chunk = shm;
    }
    g_world->ring.chunk = ring;
    g_world->node.shm_chunk = shm;
}
END_TEST

/* ---- hierarchical: node shm reduce -> leaders' ring -> node broadcast -------------- */

START_TEST(hierarchical_shm_across_fake_nodes)
{
    if (!g_fake) {
        if (g_rank == 0)
            printf("hierarchical test needs an even number >= 4 of ranks: skipped\n");
        return;
    }
    ck_assert_int_eq(parlm_comm_nodes(g_fake), g_size / 2);
    ck_assert_int_eq(parlm_comm_local_size(g_fake), 2);
    ck_assert_int_eq(parlm_comm_node(g_fake), g_rank / 2);
    ck_assert_int_eq(parlm_comm_local_rank(g_fake), g_rank % 2);
    ck_assert_int_eq(dist_choose(g_fake, DIST_ALLREDUCE, 1 << 20, PARLM_ALGO_AUTO), PARLM_ALGO_SHM);
    /* reduce-scatter / all-gather cannot use the window across nodes */
    ck_assert_int_eq(dist_choose(g_fake, DIST_REDUCE_SCATTER, 1 << 20, PARLM_ALGO_SHM),
                     PARLM_ALGO_RING);
    const unsigned algos[] = {PARLM_ALGO_SHM, PARLM_ALGO_SHM | PARLM_WIRE_BF16, PARLM_ALGO_AUTO,
                              PARLM_ALGO_RING, PARLM_ALGO_RD};
    for (size_t a = 0; a < sizeof algos / sizeof algos[0]; a++)
        for (int i = 0; i < n_lengths; i++)
            for (int op = 0; op < 2; op++)
                ck_assert_msg(check_allreduce(g_fake, lengths[i], (parlm_reduce_op)op, algos[a]),
                              ALL_OK_MSG);
    /* a shared buffer across nodes takes the hierarchical (copying) path: same bits */
    const int64_t n = 100003;
    float *sh = NULL, *want = make_input(n, 90);
    ck_assert_int_eq(parlm_comm_alloc_shared(g_fake, n, &sh), PARLM_OK);
    memcpy(sh, want, n * sizeof(float));
    ck_assert_int_eq(parlm_allreduce(g_fake, want, n, PARLM_REDUCE_AVG, PARLM_ALGO_SHM), PARLM_OK);
    ck_assert_int_eq(parlm_allreduce(g_fake, sh, n, PARLM_REDUCE_AVG, PARLM_ALGO_AUTO), PARLM_OK);
    ck_assert_msg(all_ok(memcmp(sh, want, n * sizeof(float)) == 0, "shared buffer across "
                         "fake nodes differs"), ALL_OK_MSG);
    ck_assert_int_eq(parlm_comm_free_shared(g_fake, sh), PARLM_OK);
    parlm_free(want);
}
END_TEST

/* ---- reduce-scatter and all-gather ----------------------------------------------------- */

static int check_reduce_scatter(parlm_comm *c, int64_t n, parlm_reduce_op op, unsigned flags)
{
    int p = parlm_comm_size(c), r = parlm_comm_rank(c), bf16 = (flags & PARLM_WIRE_BF16) != 0;
    int64_t off, len;
    parlm_block_range(n, p, r, &off, &len);
    int *counts = malloc((size_t)p * sizeof(int));
    for (int j = 0; j < p; j++) {
        int64_t o, l;
        parlm_block_range(n, p, j, &o, &l);
        counts[j] = (int)l;
    }
    float *x = make_input(n, 3 + flags + 17u * (unsigned)op);
    double *in = malloc((size_t)(n ? n : 1) * sizeof(double));
    double *ref = malloc((size_t)(len ? len : 1) * sizeof(double));
    double *mag = malloc((size_t)(len ? len : 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++)
        in[i] = x[i];
    MPI_Reduce_scatter(in, ref, counts, MPI_DOUBLE, MPI_SUM, mpi_of(c));
    for (int64_t i = 0; i < n; i++)
        in[i] = fabs((double)x[i]);
    MPI_Reduce_scatter(in, mag, counts, MPI_DOUBLE, MPI_SUM, mpi_of(c));
    double scale = op == PARLM_REDUCE_AVG ? 1.0 / p : 1.0;
    parlm_status st = parlm_reduce_scatter(c, x, n, op, flags);
    int ok = st == PARLM_OK;
    int64_t bad = -1;
    for (int64_t i = 0; ok && i < len; i++) {
        double want = ref[i] * scale;
        if (!(fabs((double)x[off + i] - want) <= tolerance(want, mag[i] * scale, p, bf16))) {
            bad = i;
            break;
        }
    }
    int res = all_ok(ok && bad < 0, "reduce_scatter %s n=%lld: status %d (%s), block element %lld wrong",
                     flag_name(flags), (long long)n, st, parlm_last_error(), (long long)bad);
    free(counts), parlm_free(x), free(in), free(ref), free(mag);
    return res;
}

static int check_all_gather(parlm_comm *c, int64_t n, unsigned flags)
{
    int p = parlm_comm_size(c), r = parlm_comm_rank(c), bf16 = (flags & PARLM_WIRE_BF16) != 0;
    int *counts = malloc((size_t)p * sizeof(int)), *displs = malloc((size_t)p * sizeof(int));
    for (int j = 0; j < p; j++) {
        int64_t o, l;
        parlm_block_range(n, p, j, &o, &l);
        counts[j] = (int)l, displs[j] = (int)o;
    }
    /* only the own block is meaningful input: the rest is NaN and must be overwritten */
    float *x = tu_alloc_nan(n), *ref = tu_alloc_nan(n);
    float *mine = make_input(n, 5 + flags);
    memcpy(x + displs[r], mine + displs[r], (size_t)counts[r] * sizeof(float));
    MPI_Allgatherv(mine + displs[r], counts[r], MPI_FLOAT, ref, counts, displs, MPI_FLOAT,
                   mpi_of(c));
    if (bf16 && p > 1) /* the wire rounds each block once, the owner's copy included */
        for (int64_t i = 0; i < n; i++)
            ref[i] = ref_bf16(ref[i]);
    parlm_status st = parlm_all_gather(c, x, n, flags);
    int ok = st == PARLM_OK && (n == 0 || memcmp(x, ref, (size_t)n * sizeof(float)) == 0);
    int res = all_ok(ok, "all_gather %s n=%lld: status %d (%s) or data differs from MPI_Allgatherv",
                     flag_name(flags), (long long)n, st, parlm_last_error());
    free(counts), free(displs), parlm_free(x), parlm_free(ref), parlm_free(mine);
    return res;
}

START_TEST(reduce_scatter_every_algorithm)
{
    const unsigned algos[] = {PARLM_ALGO_AUTO, PARLM_ALGO_RING, PARLM_ALGO_SHM, PARLM_ALGO_MPI,
                              PARLM_ALGO_RING | PARLM_WIRE_BF16};
    for (size_t a = 0; a < sizeof algos / sizeof algos[0]; a++)
        for (int i = 0; i < n_lengths; i++)
            for (int op = 0; op < 2; op++)
                ck_assert_msg(check_reduce_scatter(g_world, lengths[i], (parlm_reduce_op)op, algos[a]),
                              ALL_OK_MSG);
    if (g_fake) /* ring fallback across nodes */
        ck_assert_msg(check_reduce_scatter(g_fake, 100003, PARLM_REDUCE_SUM, PARLM_ALGO_SHM),
                      ALL_OK_MSG);
}
END_TEST

START_TEST(all_gather_every_algorithm)
{
    const unsigned algos[] = {PARLM_ALGO_AUTO, PARLM_ALGO_RING, PARLM_ALGO_SHM, PARLM_ALGO_MPI,
                              PARLM_ALGO_RING | PARLM_WIRE_BF16};
    for (size_t a = 0; a < sizeof algos / sizeof algos[0]; a++)
        for (int i = 0; i < n_lengths; i++)
            ck_assert_msg(check_all_gather(g_world, lengths[i], algos[a]), ALL_OK_MSG);
    if (g_fake)
        ck_assert_msg(check_all_gather(g_fake, 100003, PARLM_ALGO_SHM), ALL_OK_MSG);
}
END_TEST

/* reduce-scatter then all-gather (ZeRO-1's two halves) equals an all-reduce exactly:
 * both ring halves are the ring all-reduce */
START_TEST(reduce_scatter_then_all_gather_is_allreduce)
{
    int64_t n = 300007;
    float *a = make_input(n, 11), *b = tu_alloc_nan(n);
    memcpy(b, a, (size_t)n * sizeof(float));
    ck_assert_int_eq(parlm_allreduce(g_world, a, n, PARLM_REDUCE_AVG, PARLM_ALGO_RING), PARLM_OK);
    ck_assert_int_eq(parlm_reduce_scatter(g_world, b, n, PARLM_REDUCE_AVG, PARLM_ALGO_RING), PARLM_OK);
    ck_assert_int_eq(parlm_all_gather(g_world, b, n, PARLM_ALGO_RING), PARLM_OK);
    ck_assert_msg(all_ok(memcmp(a, b, (size_t)n * sizeof(float)) == 0, "RS+AG != AR"), ALL_OK_MSG);
    parlm_free(a), parlm_free(b);
}
END_TEST

/* ---- nonblocking ----------------------------------------------------------------------- */

START_TEST(nonblocking_buckets_complete_in_order)
{
    enum { NB = 7 };
    /* buckets of a backward pass, on every path, mixed with a reduce-scatter/all-gather */
    const int64_t len[NB] = {1000003, 17, 65537, 4096, 250001, 3, 131071};
    const unsigned algo[NB] = {PARLM_ALGO_RING, PARLM_ALGO_RD, PARLM_ALGO_SHM, PARLM_ALGO_MPI,
                               PARLM_ALGO_AUTO, PARLM_ALGO_RING | PARLM_WIRE_BF16, PARLM_ALGO_SHM};
    float *x[NB], *want[NB];
    parlm_request *req[NB];
    for (int b = 0; b < NB; b++) {
        x[b] = make_input(len[b], 20 + (uint64_t)b);
        want[b] = tu_alloc_nan(len[b]);
        memcpy(want[b], x[b], (size_t)len[b] * sizeof(float));
    }
    /* the expected results: the same collectives, blocking, one by one */
    for (int b = 0; b < NB; b++) {
        parlm_status st = b == 4 ? parlm_reduce_scatter(g_world, want[b], len[b], PARLM_REDUCE_SUM, algo[b])
                                 : parlm_allreduce(g_world, want[b], len[b], PARLM_REDUCE_AVG, algo[b]);
        ck_assert_int_eq(st, PARLM_OK);
    }
    ck_assert_int_eq(parlm_all_gather(g_world, want[4], len[4], PARLM_ALGO_AUTO), PARLM_OK);
    for (int b = 0; b < NB; b++) {
        parlm_status st = b == 4 ? parlm_reduce_scatter_start(g_world, x[b], len[b], PARLM_REDUCE_SUM,
                                                              algo[b], &req[b])
                                 : parlm_allreduce_start(g_world, x[b], len[b], PARLM_REDUCE_AVG,
                                                         algo[b], &req[b]);
        ck_assert_int_eq(st, PARLM_OK);
        ck_assert_ptr_nonnull(req[b]);
    }
    parlm_request *ag = NULL;
    ck_assert_int_eq(parlm_all_gather_start(g_world, x[4], len[4], PARLM_ALGO_AUTO, &ag), PARLM_OK);
    /* "compute" while polling the last bucket; whenever a bucket is done, all earlier
     * ones must be done too (test on them completes at once) */
    int order_ok = 1, done_last = 0;
    volatile double sink = 0;
    for (long it = 0; !done_last; it++) {
        for (int k = 0; k < 2000; k++)
            sink += (double)k * 1e-9;
        for (int b = 0; b < NB; b++) {
            if (!req[b])
                continue;
            int done = 0;
            ck_assert_int_eq(parlm_request_test(&req[b], &done), PARLM_OK);
            if (done) {
                ck_assert_ptr_null(req[b]);
                for (int e = 0; e < b; e++) {
                    int earlier = 1;
                    ck_assert_int_eq(parlm_request_test(&req[e], &earlier), PARLM_OK);
                    order_ok &= earlier;
                }
            }
        }
        ck_assert_int_eq(parlm_request_test(&ag, &done_last), PARLM_OK);
    }
    /* the all-gather was started last: every bucket is complete now */
    for (int b = 0; b < NB; b++) {
        int done = 0;
        ck_assert_int_eq(parlm_request_test(&req[b], &done), PARLM_OK);
        order_ok &= done;
    }
    ck_assert_msg(all_ok(order_ok, "a bucket completed before an earlier one"), ALL_OK_MSG);
    int same = 1;
    for (int b = 0; b < NB; b++)
        same &= memcmp(x[b], want[b], (size_t)len[b] * sizeof(float)) == 0;
    ck_assert_msg(all_ok(same, "nonblocking results differ from blocking ones"), ALL_OK_MSG);

    /* waiting on the last one first completes all */
    for (int b = 0; b < NB; b++)
        ck_assert_int_eq(parlm_allreduce_start(g_world, x[b], len[b], PARLM_REDUCE_SUM, algo[b],
                                               &req[b]),
                         PARLM_OK);
    ck_assert_int_eq(parlm_request_wait(&req[NB - 1]), PARLM_OK);
    for (int b = 0; b < NB - 1; b++) {
        int done = 0;
        ck_assert_int_eq(parlm_request_test(&req[b], &done), PARLM_OK);
        ck_assert_msg(done, "bucket %d not done after waiting on the last", b);
    }
    ck_assert_int_eq(parlm_comm_progress(g_world), PARLM_OK);
    for (int b = 0; b < NB; b++)
        parlm_free(x[b]), parlm_free(want[b]);
    (void)sink;
}
END_TEST

/* Small nodes: a rank that only looks in now and then (as between layers of backward)
 * finds its peers' chunks deposited ahead and deposits its own ahead, so it completes a
 * long series of collectives in far fewer progress calls than there are chunks; the
 * small window (3 buffers of 1000 floats) makes the rotation wrap many times, inside one
 * collective and across them. Results equal the blocking collectives bitwise. The ranks
 * take turns (barriers between them), so what each look achieves is fixed by the
 * algorithm, not by how the machine schedules the ranks. */
START_TEST(shm_runs_ahead_of_a_busy_peer)
{
    const parlm_comm_config cfg = {.shm_chunk = 1000, .shm_nbuf = 3};
    parlm_comm *c = NULL;
    parlm_status st = parlm_comm_world(&c, &cfg);
    ck_assert_int_eq(st, PARLM_OK);
    enum { NB = 5 };
    /* chunks: all-reduces 31, 1, 3 and 40; the reduce-scatter of 9000 (blocks of 4500 in
     * 500-float areas) 9, the all-gather (blocks of 4500) 5: 89 on 2 ranks */
    const int64_t len[NB] = {30011, 1, 9000, 2999, 40000};
    float *x[NB], *want[NB];
    for (int b = 0; b < NB; b++) {
        x[b] = make_input(len[b], 40 + (uint64_t)b);
        want[b] = tu_alloc_nan(len[b]);
        memcpy(want[b], x[b], (size_t)len[b] * sizeof(float));
    }
    /* expected: blocking, on the default communicator (same rank order of sums) */
    ck_assert_int_eq(parlm_allreduce(g_world, want[0], len[0], PARLM_REDUCE_AVG, PARLM_ALGO_SHM), PARLM_OK);
    ck_assert_int_eq(parlm_allreduce(g_world, want[1], len[1], PARLM_REDUCE_SUM, PARLM_ALGO_SHM), PARLM_OK);
    ck_assert_int_eq(parlm_reduce_scatter(g_world, want[2], len[2], PARLM_REDUCE_SUM, PARLM_ALGO_SHM), PARLM_OK);
    ck_assert_int_eq(parlm_all_gather(g_world, want[2], len[2], PARLM_ALGO_SHM), PARLM_OK);
    ck_assert_int_eq(parlm_allreduce(g_world, want[3], len[3], PARLM_REDUCE_SUM, PARLM_ALGO_SHM), PARLM_OK);
    ck_assert_int_eq(parlm_allreduce(g_world, want[4], len[4], PARLM_REDUCE_AVG, PARLM_ALGO_SHM), PARLM_OK);
    parlm_request *req[NB + 1];
    /* starting moves data too (the first chunks): one rank after the other, rank 0 first */
    for (int r = 0; r < g_size; r++) {
        if (g_rank == r) {
            ck_assert_int_eq(parlm_allreduce_start(c, x[0], len[0], PARLM_REDUCE_AVG,
                                                   PARLM_ALGO_SHM, &req[0]), PARLM_OK);
            ck_assert_int_eq(parlm_allreduce_start(c, x[1], len[1], PARLM_REDUCE_SUM,
                                                   PARLM_ALGO_SHM, &req[1]), PARLM_OK);
            ck_assert_int_eq(parlm_reduce_scatter_start(c, x[2], len[2], PARLM_REDUCE_SUM,
                                                        PARLM_ALGO_SHM, &req[2]), PARLM_OK);
            ck_assert_int_eq(parlm_all_gather_start(c, x[2], len[2], PARLM_ALGO_SHM, &req[3]),
                             PARLM_OK);
            ck_assert_int_eq(parlm_allreduce_start(c, x[3], len[3], PARLM_REDUCE_SUM,
                                                   PARLM_ALGO_SHM, &req[4]), PARLM_OK);
            ck_assert_int_eq(parlm_allreduce_start(c, x[4], len[4], PARLM_REDUCE_AVG,
                                                   PARLM_ALGO_SHM, &req[5]), PARLM_OK);
        }
        MPI_Barrier(MPI_COMM_WORLD);
    }
    /* A turn: rank 0 (the busy one) looks in once, then every other rank in rank order
     * does; a look does all it can (progress runs until it would wait). Bounded, so that a
     * collective that stops moving fails here instead of hanging. */
    int done = 0, all_done = 0;
    long calls = 0, turns = 0;
    for (; !all_done && turns < 100000; turns++) {
        for (int r = 0; r < g_size; r++) {
            if (g_rank == r && !done) {
                calls++;
                ck_assert_int_eq(parlm_request_test(&req[NB], &done), PARLM_OK);
            }
            MPI_Barrier(MPI_COMM_WORLD);
        }
        MPI_Allreduce(&done, &all_done, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    }
    ck_assert_msg(all_done, "not done after %ld turns", turns);
    for (int b = 0; b < NB; b++)
        ck_assert_int_eq(parlm_request_wait(&req[b]), PARLM_OK);
    int same = 1;
    for (int b = 0; b < NB; b++)
        same &= memcmp(x[b], want[b], (size_t)len[b] * sizeof(float)) == 0;
    ck_assert_msg(all_ok(same, "results differ from the blocking collectives"), ALL_OK_MSG);
    /* Run-ahead: every look finishes the whole window (3 chunks) the peer filled since
     * the last and deposits the next: ceil(89 / 3) = 30 looks. Without depositing ahead
     * (a look deposits only what it then finishes) it takes 45. */
    if (parlm_comm_local_size(c) <= DIST_SHM_FULL_SUM_MAX) {
        if (g_rank == 0)
            printf("shm run-ahead: the busy rank finished 89 chunks in %ld looks\n", calls);
        ck_assert_msg(all_ok(g_rank != 0 || calls <= 30, "the busy rank needed %ld looks for "
                             "89 chunks: no run-ahead", calls), ALL_OK_MSG);
    }
    ck_assert_int_eq(parlm_comm_free(c), PARLM_OK);
    for (int b = 0; b < NB; b++)
        parlm_free(x[b]), parlm_free(want[b]);
}
END_TEST

/* Zero-copy all-reduce on parlm_comm_alloc_shared buffers: bitwise the copying path's
 * result, for awkward lengths, at offsets inside the allocation, blocking and queued
 * between copying collectives while one rank is busy; mismatched offsets are refused on
 * every rank instead of reading garbage. */
START_TEST(shared_buffers_reduce_in_place)
{
    const int64_t lens[] = {1, 2, 3, 5, 17, 65535, 65536, 65537, 131073, 1000003};
    const int64_t cap = 1000003 + 64;
    float *sh = NULL;
    ck_assert_int_eq(parlm_comm_alloc_shared(g_world, cap, &sh), PARLM_OK);
    ck_assert_ptr_nonnull(sh);
    ck_assert_int_eq((uintptr_t)sh % 64, 0);
    int same = 1;
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        int64_t n = lens[i], off = i % 2 ? 7 : 0; /* unaligned offsets too */
        for (int op = 0; op < 2; op++) {
            float *want = make_input(n, 60 + i);
            memcpy(sh + off, want, (size_t)n * sizeof(float));
            ck_assert_int_eq(parlm_allreduce(g_world, want, n, (parlm_reduce_op)op, PARLM_ALGO_SHM),
                             PARLM_OK);
            ck_assert_int_eq(parlm_allreduce(g_world, sh + off, n, (parlm_reduce_op)op,
                                             PARLM_ALGO_AUTO), PARLM_OK);
            same &= memcmp(sh + off, want, (size_t)n * sizeof(float)) == 0;
            parlm_free(want);
        }
    }
    ck_assert_msg(all_ok(same, "shared-buffer all-reduce differs from the copying path"),
                  ALL_OK_MSG);
    /* reduce-scatter (this rank's block) and all-gather (everything) */
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        int64_t n = lens[i], off = i % 2 ? 0 : 5, bo, bn;
        parlm_block_range(n, g_size, g_rank, &bo, &bn);
        float *want = make_input(n, 80 + i);
        memcpy(sh + off, want, (size_t)n * sizeof(float));
        ck_assert_int_eq(parlm_reduce_scatter(g_world, want, n, PARLM_REDUCE_AVG, PARLM_ALGO_SHM),
                         PARLM_OK);
        ck_assert_int_eq(parlm_reduce_scatter(g_world, sh + off, n, PARLM_REDUCE_AVG,
                                              PARLM_ALGO_AUTO), PARLM_OK);
        same &= memcmp(sh + off + bo, want + bo, (size_t)bn * sizeof(float)) == 0;
        memcpy(sh + off + bo, want + bo, (size_t)bn * sizeof(float));
        ck_assert_int_eq(parlm_all_gather(g_world, want, n, PARLM_ALGO_SHM), PARLM_OK);
        ck_assert_int_eq(parlm_all_gather(g_world, sh + off, n, PARLM_ALGO_AUTO), PARLM_OK);
        same &= memcmp(sh + off, want, (size_t)n * sizeof(float)) == 0;
        parlm_free(want);
    }
    ck_assert_msg(all_ok(same, "shared-buffer reduce-scatter / all-gather differ from the "
                         "copying path"), ALL_OK_MSG);

    /* queued: private, shared, private, shared, with rank 0 busy between looks */
    enum { NB = 4 };
    const int64_t len[NB] = {300007, 200003, 5, 400009};
    float *x[NB], *want[NB];
    float *buf[NB] = {NULL, sh, NULL, sh + 200003 + 64};
    parlm_request *req[NB];
    for (int b = 0; b < NB; b++) {
        want[b] = make_input(len[b], 70 + (uint64_t)b);
        x[b] = buf[b] ? buf[b] : tu_alloc_nan(len[b]);
        memcpy(x[b], want[b], (size_t)len[b] * sizeof(float));
        ck_assert_int_eq(parlm_allreduce(g_world, want[b], len[b], PARLM_REDUCE_AVG, PARLM_ALGO_SHM),
                         PARLM_OK);
    }
    for (int b = 0; b < NB; b++)
        ck_assert_int_eq(parlm_allreduce_start(g_world, x[b], len[b], PARLM_REDUCE_AVG,
                                               PARLM_ALGO_AUTO, &req[b]), PARLM_OK);
    for (int done = 0; !done;) {
        if (g_rank == 0) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        ck_assert_int_eq(parlm_request_test(&req[NB - 1], &done), PARLM_OK);
    }
    for (int b = 0; b < NB; b++) {
        ck_assert_int_eq(parlm_request_wait(&req[b]), PARLM_OK);
        same &= memcmp(x[b], want[b], (size_t)len[b] * sizeof(float)) == 0;
        if (!buf[b])
            parlm_free(x[b]);
        parlm_free(want[b]);
    }
    ck_assert_msg(all_ok(same, "queued shared/private all-reduces differ"), ALL_OK_MSG);
    ck_assert_int_eq(parlm_comm_free_shared(g_world, sh), PARLM_OK);
    ck_assert_int_eq(parlm_comm_free_shared(g_world, sh), PARLM_EINVAL); /* not any more */

    /* different offsets on different ranks: every rank gets an error (on a communicator
     * of its own: a failed collective leaves its communicator unusable) */
    parlm_comm *c = NULL;
    ck_assert_int_eq(parlm_comm_world(&c, NULL), PARLM_OK);
    ck_assert_int_eq(parlm_comm_alloc_shared(c, 1000, &sh), PARLM_OK);
    if (parlm_comm_local_size(c) == 2 && parlm_comm_nodes(c) == 1) {
        parlm_status st = parlm_allreduce(c, sh + g_rank, 100, PARLM_REDUCE_SUM, PARLM_ALGO_SHM);
        ck_assert_int_eq(st, PARLM_EINVAL);
        ck_assert_ptr_nonnull(strstr(parlm_last_error(), "offset"));
    }
    parlm_comm_free(c);
}
END_TEST

/* Issue 8: with 2 OpenMP threads per rank on a node with fewer cores than ranks x
 * threads, waiting ranks spun (and the OpenMP runtime's idle threads with them) on the
 * cores their peers needed, and the shared-buffer all-reduce took a scheduler slice
 * (~10 ms) whatever its size. The library now decides at each wait whether the node is
 * crowded (dist_crowded): then waits yield after a few polls and the collectives open no
 * parallel region. Checked here: that verdict, against the node's ranks and CPUs counted
 * here, for 1 and 2 threads per rank, and the 4 MB all-reduce right both ways. Its speed
 * is measured, not asserted: the parlm-shm-shared 4 MB row of `mpirun -np 2 --bind-to
 * none parlm-bench allreduce --threads 2` against the same with --threads 1. */
START_TEST(crowded_node_is_detected)
{
    MPI_Comm node;
    int node_ranks = 0;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &node_ranks);
    MPI_Comm_free(&node);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    const int64_t n = (int64_t)1 << 20; /* 4 MB of floats */
    float *sh = NULL;
    ck_assert_int_eq(parlm_comm_alloc_shared(g_world, n, &sh), PARLM_OK);
    int saved = omp_get_max_threads(), ok = 1, same = 1;
    for (int t = 1; t <= 2; t++) {
        omp_set_num_threads(t);
        int want = cpus > 0 && (long)node_ranks * t > cpus, got = dist_crowded(&g_world->node);
        if (g_rank == 0)
            printf("crowded node: %d ranks on %ld CPUs, %d thread(s) per rank: crowded %d\n",
                   node_ranks, cpus, t, got);
        ok &= got == want;
        /* small integers: every order of the sum is exact */
        for (int64_t i = 0; i < n; i++)
            sh[i] = (float)((i + g_rank) % 7);
        ck_assert_int_eq(parlm_allreduce(g_world, sh, n, PARLM_REDUCE_SUM, PARLM_ALGO_AUTO),
                         PARLM_OK);
        for (int64_t i = 0; i < n; i++) {
            int64_t sum = 0;
            for (int r = 0; r < g_size; r++)
                sum += (i + r) % 7;
            same &= sh[i] == (float)sum;
        }
    }
    omp_set_num_threads(saved);
    ck_assert_msg(all_ok(ok, "dist_crowded disagrees with %d ranks x threads on %ld CPUs",
                         node_ranks, cpus), ALL_OK_MSG);
    ck_assert_msg(all_ok(same, "4 MB shared-buffer all-reduce wrong"), ALL_OK_MSG);
    parlm_comm_free_shared(g_world, sh);
}
END_TEST

/* after the first call of a size, the scratch is reused (no allocation per call) */
START_TEST(scratch_is_reused)
{
    int64_t n = 5000;
    float *x = make_input(n, 30);
    ck_assert_int_eq(parlm_allreduce(g_world, x, n, PARLM_REDUCE_SUM, PARLM_ALGO_RD), PARLM_OK);
    float *rd = g_world->rd.tmp, *ring = g_world->ring.tmp;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(parlm_allreduce(g_world, x, n - i, PARLM_REDUCE_AVG, PARLM_ALGO_RD), PARLM_OK);
        ck_assert_int_eq(parlm_allreduce(g_world, x, n, PARLM_REDUCE_AVG, PARLM_ALGO_RING), PARLM_OK);
    }
    ck_assert_ptr_eq(g_world->rd.tmp, rd);
    ck_assert_ptr_eq(g_world->ring.tmp, ring);
    parlm_free(x);
}
END_TEST

/* ---- agreement check, bad input, configuration, errors ----------------------------- */

START_TEST(agree_check_finds_the_odd_rank)
{
    ck_assert_int_eq(parlm_comm_check_agree(g_world, "config_hash", 0xfeedULL), PARLM_OK);
    if (g_size < 2)
        return;
    int odd = g_size - 1;
    uint64_t v = g_rank == odd ? 12345 : 0xfeedULL;
    parlm_status st = parlm_comm_check_agree(g_world, "config_hash", v);
    const char *m = parlm_last_error();
    char who[64];
    snprintf(who, sizeof who, "rank %d has 12345", odd);
    int ok = st == PARLM_EINVAL && strstr(m, "config_hash") && strstr(m, who) &&
             strstr(m, "rank 0 has 65261");
    ck_assert_msg(all_ok(ok, "agree: status %d, message '%s'", st, m), ALL_OK_MSG);
    /* NULL field: refused locally on every rank, before any communication */
    ck_assert_int_eq(parlm_comm_check_agree(g_world, NULL, 1), PARLM_EINVAL);
    /* still usable afterwards */
    ck_assert_int_eq(parlm_comm_check_agree(g_world, "after", 7), PARLM_OK);
}
END_TEST

START_TEST(bad_input_is_refused)
{
    float one = 1.0f;
    parlm_request *r = (parlm_request *)&one; /* must be reset to NULL on error */
    ck_assert_int_eq(parlm_allreduce(g_world, NULL, 5, PARLM_REDUCE_SUM, 0), PARLM_EINVAL);
    ck_assert(strstr(parlm_last_error(), "NULL"));
    ck_assert_int_eq(parlm_allreduce(g_world, &one, -1, PARLM_REDUCE_SUM, 0), PARLM_EINVAL);
    ck_assert(strstr(parlm_last_error(), "negative"));
    ck_assert_int_eq(parlm_allreduce(NULL, &one, 1, PARLM_REDUCE_SUM, 0), PARLM_EINVAL);
    ck_assert_int_eq(parlm_allreduce(g_world, &one, 1, (parlm_reduce_op)7, 0), PARLM_EINVAL);
    ck_assert_int_eq(parlm_allreduce(g_world, &one, 1, PARLM_REDUCE_SUM, 9), PARLM_EINVAL);
    ck_assert_int_eq(parlm_allreduce(g_world, &one, 1, PARLM_REDUCE_SUM, 0x1000), PARLM_EINVAL);
    ck_assert_int_eq(parlm_reduce_scatter(g_world, NULL, 3, PARLM_REDUCE_SUM, 0), PARLM_EINVAL);
    ck_assert_int_eq(parlm_all_gather(g_world, &one, -2, 0), PARLM_EINVAL);
    ck_assert_int_eq(parlm_allreduce_start(g_world, NULL, 2, PARLM_REDUCE_SUM, 0, &r), PARLM_EINVAL);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(parlm_allreduce_start(g_world, &one, 1, PARLM_REDUCE_SUM, 0, NULL), PARLM_EINVAL);
    ck_assert_int_eq(parlm_allreduce(g_world, &one, 1, PARLM_REDUCE_SUM,
                                     PARLM_ALGO_MPI | PARLM_WIRE_BF16),
                     PARLM_EUNSUPPORTED);
    ck_assert_int_eq(parlm_reduce_scatter(g_world, &one, 1, PARLM_REDUCE_SUM, PARLM_ALGO_RD),
                     PARLM_EUNSUPPORTED);
    ck_assert_int_eq(parlm_allreduce(g_world, &one, (int64_t)1 << 40, PARLM_REDUCE_SUM, PARLM_ALGO_MPI),
                     PARLM_EUNSUPPORTED);
    int done = 0;
    ck_assert_int_eq(parlm_request_test(NULL, &done), PARLM_EINVAL);
    ck_assert_int_eq(parlm_request_wait(NULL), PARLM_EINVAL);
    r = NULL;
    ck_assert_int_eq(parlm_request_test(&r, &done), PARLM_OK);
    ck_assert_int_eq(done, 1);
    ck_assert_int_eq(parlm_request_wait(&r), PARLM_OK);
    ck_assert_int_eq(parlm_comm_bcast(g_world, &one, 4, g_size), PARLM_EINVAL);
    ck_assert_int_eq(parlm_comm_world(NULL, NULL), PARLM_EINVAL);
    parlm_comm *none = g_world;
    ck_assert_int_eq(parlm_comm_from_mpi(&none, NULL, NULL), PARLM_EINVAL);
    ck_assert_ptr_null(none);
    ck_assert_int_eq(parlm_comm_rank(NULL), -1);
    /* nothing above touched the communicator: it still works */
    one = 1.0f;
    ck_assert_int_eq(parlm_allreduce(g_world, &one, 1, PARLM_REDUCE_SUM, 0), PARLM_OK);
    ck_assert_msg(all_ok(one == (float)g_size, "sum of ones = %g", one), ALL_OK_MSG);
}
END_TEST

START_TEST(config_forces_the_algorithm)
{
    const unsigned want[] = {PARLM_ALGO_RING, PARLM_ALGO_SHM, PARLM_ALGO_RD, PARLM_ALGO_MPI};
    for (int i = 0; i < 4; i++) {
        parlm_comm *c = NULL;
        const parlm_comm_config cfg = {.algo = want[i]};
        ck_assert_int_eq(parlm_comm_world(&c, &cfg), PARLM_OK);
        unsigned got = (unsigned)dist_choose(c, DIST_ALLREDUCE, 1 << 20, PARLM_ALGO_AUTO);
        int shm_possible = parlm_comm_local_size(c) > 1;
        unsigned expect = want[i] == PARLM_ALGO_SHM && !shm_possible ? PARLM_ALGO_RING : want[i];
        ck_assert_uint_eq(got, expect);
        /* an explicit algorithm wins over the configuration */
        ck_assert_int_eq(dist_choose(c, DIST_ALLREDUCE, 1 << 20, PARLM_ALGO_RING), PARLM_ALGO_RING);
        ck_assert_msg(check_allreduce(c, 70001, PARLM_REDUCE_SUM, PARLM_ALGO_AUTO), ALL_OK_MSG);
        parlm_comm_config got_cfg;
        ck_assert_int_eq(parlm_comm_get_config(c, &got_cfg), PARLM_OK);
        ck_assert_uint_eq(got_cfg.algo, want[i]);
        ck_assert_int_eq(got_cfg.ring_chunk, DIST_RING_CHUNK_DEFAULT); /* 0: the defaults */
        ck_assert_int_eq(got_cfg.shm_nbuf, DIST_SHM_NBUF_DEFAULT);
        ck_assert_int_eq(parlm_comm_free(c), PARLM_OK);
    }
    /* out of range: refused on every rank before any communication */
    const parlm_comm_config bad[] = {{.algo = PARLM_ALGO_MPI + 1}, {.ring_chunk = 255},
                                     {.shm_chunk = PARLM_COMM_CHUNK_MAX + 1}, {.shm_nbuf = 1},
                                     {.shm_nbuf = -64}};
    const char *field[] = {"cfg.algo", "cfg.ring_chunk", "cfg.shm_chunk", "cfg.shm_nbuf",
                           "cfg.shm_nbuf"};
    for (int i = 0; i < 5; i++) {
        parlm_comm *c = (parlm_comm *)&bad; /* set to NULL on failure */
        ck_assert_int_eq(parlm_comm_world(&c, &bad[i]), PARLM_EINVAL);
        ck_assert_msg(strstr(parlm_last_error(), field[i]), "%s", parlm_last_error());
        ck_assert_ptr_null(c);
    }
}
END_TEST

START_TEST(mpi_errors_become_esystem)
{
    char mpi_msg[MPI_MAX_ERROR_STRING];
    int len;
    MPI_Error_string(MPI_ERR_COUNT, mpi_msg, &len);
    ck_assert_int_eq(dist_mpi_error(MPI_ERR_COUNT, "MPI_Isend(ring)"), PARLM_ESYSTEM);
    ck_assert(strstr(parlm_last_error(), "MPI_Isend(ring)"));
    ck_assert(strstr(parlm_last_error(), mpi_msg));
    MPI_Comm null = MPI_COMM_NULL;
    parlm_comm *c = NULL;
    ck_assert_int_eq(parlm_comm_from_mpi(&c, &null, NULL), PARLM_EINVAL);
    ck_assert(strstr(parlm_last_error(), "MPI_COMM_NULL"));
}
END_TEST

/* ---- layout and helpers ------------------------------------------------------------- */

START_TEST(layout_matches_mpi)
{
    int r, p, lr, lp;
    MPI_Comm local;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    MPI_Comm_size(MPI_COMM_WORLD, &p);
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, r, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &lr);
    MPI_Comm_size(local, &lp);
    MPI_Comm_free(&local);
    ck_assert_int_eq(parlm_comm_rank(g_world), r);
    ck_assert_int_eq(parlm_comm_size(g_world), p);
    ck_assert_int_eq(parlm_comm_local_rank(g_world), lr);
    ck_assert_int_eq(parlm_comm_local_size(g_world), lp);
    int leaders = lr == 0, all_leaders = 0;
    MPI_Allreduce(&leaders, &all_leaders, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    ck_assert_int_eq(parlm_comm_nodes(g_world), all_leaders);
    /* with several ranks on a node, the shm path is really taken (not the ring fallback) */
    if (lp > 1)
        ck_assert_int_eq(dist_choose(g_world, DIST_ALLREDUCE, 1 << 20, PARLM_ALGO_SHM), PARLM_ALGO_SHM);
    /* its MPI communicator is a duplicate, not the world itself */
    MPI_Comm dup;
    int cmp;
    ck_assert_int_eq(parlm_comm_get_mpi(g_world, &dup), PARLM_OK);
    MPI_Comm_compare(dup, MPI_COMM_WORLD, &cmp);
    ck_assert_int_eq(cmp, MPI_CONGRUENT);
    /* a communicator over a split: even and odd ranks */
    MPI_Comm half;
    MPI_Comm_split(MPI_COMM_WORLD, r % 2, r, &half);
    parlm_comm *h = NULL;
    ck_assert_int_eq(parlm_comm_from_mpi(&h, &half, NULL), PARLM_OK);
    ck_assert_int_eq(parlm_comm_size(h), (p + 1 - r % 2) / 2);
    ck_assert_int_eq(parlm_comm_rank(h), r / 2);
    float v = (float)r;
    ck_assert_int_eq(parlm_allreduce(h, &v, 1, PARLM_REDUCE_SUM, 0), PARLM_OK);
    float want = 0;
    for (int j = r % 2; j < p; j += 2)
        want += (float)j;
    ck_assert_msg(all_ok(v == want, "split sum %g != %g", v, want), ALL_OK_MSG);
    ck_assert_int_eq(parlm_comm_free(h), PARLM_OK);
    MPI_Comm_free(&half);
    ck_assert_int_eq(parlm_comm_free(NULL), PARLM_OK);
    /* barrier and broadcast */
    ck_assert_int_eq(parlm_comm_barrier(g_world), PARLM_OK);
    char msg[16] = "";
    if (r == p - 1)
        strcpy(msg, "from the last");
    ck_assert_int_eq(parlm_comm_bcast(g_world, msg, sizeof msg, p - 1), PARLM_OK);
    ck_assert_str_eq(msg, "from the last");
}
END_TEST

START_TEST(block_range_partitions)
{
    const int64_t ns[] = {0, 1, 2, 5, 7, 100, 1000003, (int64_t)1 << 62};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        for (int p = 1; p <= 9; p++) {
            int64_t next = 0;
            for (int r = 0; r < p; r++) {
                int64_t s, c;
                parlm_block_range(ns[i], p, r, &s, &c);
                ck_assert_int_eq(s, next); /* contiguous, in rank order */
                ck_assert(c == ns[i] / p || c == ns[i] / p + 1);
                if (ns[i] < (1 << 20)) /* the documented formula, where r*n fits */
                    ck_assert_int_eq(s, (int64_t)r * ns[i] / p);
                next = s + c;
            }
            ck_assert_int_eq(next, ns[i]);
        }
}
END_TEST

START_TEST(bf16_conversion_rounds_to_nearest_even)
{
    enum { N = 4096 };
    float x[N + 8], back[N + 8];
    uint16_t h[N + 8];
    tu_fill(x, N, 77);
    for (int i = 0; i < N; i++)
        x[i] *= ldexpf(1.0f, (i % 60) - 30); /* many exponents */
    /* ties: 1 + 2^-8 (tie, even below) and 1 + 3*2^-8 (tie, even above), specials */
    float special[8] = {1.0f + 0x1p-8f, 1.0f + 0x3p-8f, -(1.0f + 0x1p-8f), 0.0f, -0.0f, INFINITY,
                        -INFINITY, FLT_MAX};
    memcpy(x + N, special, sizeof special);
    dist_to_bf16(h, x, N + 8);
    dist_from_bf16(back, h, N + 8);
    for (int i = 0; i < N + 8; i++)
        ck_assert_msg(back[i] == ref_bf16(x[i]) && signbit(back[i]) == signbit(x[i]),
                      "x=%a -> %a, want %a", (double)x[i], (double)back[i], (double)ref_bf16(x[i]));
    ck_assert(back[N] == 1.0f && back[N + 1] == 1.0f + 0x4p-8f);
    ck_assert(isinf(back[N + 7])); /* FLT_MAX rounds up past the largest bf16 */
    float nan = NAN;
    uint16_t hn;
    dist_to_bf16(&hn, &nan, 1);
    dist_from_bf16(back, &hn, 1);
    ck_assert(isnan(back[0]));
    memcpy(back, x, sizeof back);
    dist_round_bf16(back, N);
    for (int i = 0; i < N; i++)
        ck_assert(back[i] == ref_bf16(x[i]));
}
END_TEST

START_TEST(sum_k_matches_double)
{
    enum { N = 1001, K = 5 };
    static float s[K][N], out[N];
    const float *src[K];
    for (int j = 0; j < K; j++)
        tu_fill(s[j], N, 100 + (uint64_t)j), src[j] = s[j];
    for (int k = 1; k <= K; k++) {
        dist_sum_k(out, src, k, N, 0.25f);
        for (int i = 0; i < N; i++) {
            double want = 0, mag = 0;
            for (int j = 0; j < k; j++)
                want += s[j][i], mag += fabs((double)s[j][i]);
            /* k-1 f32 additions + one scaling: k*eps*mag */
            ck_assert(fabs(out[i] - 0.25 * want) <= k * (double)FLT_EPSILON * 0.25 * mag);
        }
    }
}
END_TEST

static Suite *allreduce_suite(void)
{
    Suite *s = suite_create("allreduce");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"layout", layout_matches_mpi},
        {"block_range", block_range_partitions},
        {"bf16", bf16_conversion_rounds_to_nearest_even},
        {"sum_k", sum_k_matches_double},
        {"allreduce_sum", allreduce_sum_every_algorithm},
        {"allreduce_avg", allreduce_avg_every_algorithm},
        {"allreduce_bf16", allreduce_bf16_wire},
        {"chunk_boundaries", chunk_boundaries},
        {"hierarchical", hierarchical_shm_across_fake_nodes},
        {"reduce_scatter", reduce_scatter_every_algorithm},
        {"all_gather", all_gather_every_algorithm},
        {"rs_ag", reduce_scatter_then_all_gather_is_allreduce},
        {"nonblocking", nonblocking_buckets_complete_in_order},
        {"shm_run_ahead", shm_runs_ahead_of_a_busy_peer},
        {"shared_buffers", shared_buffers_reduce_in_place},
        {"crowded_node", crowded_node_is_detected},
        {"scratch", scratch_is_reused},
        {"agree", agree_check_finds_the_odd_rank},
        {"bad_input", bad_input_is_refused},
        {"config", config_forces_the_algorithm},
        {"mpi_errors", mpi_errors_become_esystem},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(int argc, char **argv)
{
    int level = -1;
    if (parlm_dist_init(&argc, &argv, &level) != PARLM_OK) {
        fprintf(stderr, "test_allreduce: %s\n", parlm_last_error());
        return 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    make_lengths();
    if (parlm_comm_world(&g_world, NULL) != PARLM_OK ||
        (g_size >= 4 && g_size % 2 == 0 &&
         dist_comm_create(&g_fake, MPI_COMM_WORLD, 2, NULL) != PARLM_OK)) {
        fprintf(stderr, "test_allreduce: rank %d: %s\n", g_rank, parlm_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (g_rank == 0)
        printf("test_allreduce: %d ranks, %d node(s), MPI thread level %s\n", g_size,
               parlm_comm_nodes(g_world), parlm_thread_level_name(level));
    SRunner *sr = srunner_create(allreduce_suite());
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, g_rank == 0 ? CK_NORMAL : CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    if (failed && g_rank != 0) {
        printf("rank %d:\n", g_rank);
        srunner_print(sr, CK_NORMAL);
    }
    srunner_free(sr);
    parlm_comm_free(g_fake);
    parlm_comm_free(g_world);
    parlm_dist_finalize();
    return failed ? 1 : 0;
}
